"""The camera path, computed from the layout and the plan (pure numpy; scene.py keys it).

The camera looks at the machine from the audience side (+y, above). The main scene opens on an
establishing view (as much of the machine as the marble-size rule allows), then follows where the music
is: the target moves to the strike-weighted centre of the next seconds, the distance widens with the spread
of the strikes. The distance never exceeds the one at which a marble at the launchers (the farthest a
marble gets from the camera) is MIN_MARBLE_PX across on a 1920-pixel frame edge. The loop's path is
periodic: its state at the loop's end equals its start.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from blender_scripts.layout import Layout
from blender_scripts.planner import LAUNCH_Y, LAUNCH_Z, Plan

SENSOR_MM = 36.0
FRAME_EDGE_PX = 1920  # the long edge of every preset (1080p, vertical 1080x1920, 4K scales it up)
MIN_MARBLE_PX = 13.0  # the rule is 12 px; one more for rounding and DOF blur
VIEW_DIR = np.array([0.0, 0.85, 0.42]) / np.linalg.norm([0.0, 0.85, 0.42])
TARGET_Y, TARGET_Z = -0.35, 0.1
KEY_STEP_S = 0.5
ESTABLISH_S = 2.5
SIGMA_S = 1.2  # how far ahead/behind the follow move looks
MIN_DISTANCE = 1.4


@dataclass(frozen=True)
class CameraPath:
    times: np.ndarray  # song seconds
    target: np.ndarray  # (n, 3)
    location: np.ndarray  # (n, 3)
    periodic: bool


def half_width_per_metre(lens_mm: float) -> float:
    return SENSOR_MM / 2 / lens_mm


def max_distance(radius: float, lens_mm: float) -> float:
    """Target distance at which a marble at the launchers is still MIN_MARBLE_PX across."""
    focal_px = lens_mm / SENSOR_MM * FRAME_EDGE_PX
    extra = float(np.dot(VIEW_DIR, [0.0, TARGET_Y - LAUNCH_Y, TARGET_Z - LAUNCH_Z]))  # launchers sit behind
    return max(MIN_DISTANCE, 2 * radius * focal_px / MIN_MARBLE_PX - extra)


def marble_px(radius: float, lens_mm: float, depth: float) -> float:
    return 2 * radius * (lens_mm / SENSOR_MM * FRAME_EDGE_PX) / depth


def _follow(times, hit_t, hit_x, period: float | None):
    dt = times[:, None] - hit_t[None, :]
    if period:
        dt = (dt + period / 2) % period - period / 2  # circular distance: the loop comes round
    w = np.exp(-0.5 * (dt / SIGMA_S) ** 2) + 1e-12
    centre = (w * hit_x).sum(axis=1) / w.sum(axis=1)
    spread = np.sqrt((w * (hit_x - centre[:, None]) ** 2).sum(axis=1) / w.sum(axis=1))
    return centre, spread


def path(plan: Plan, layout: Layout, lens_mm: float, *, start: float, end: float, loop: bool) -> CameraPath:
    """Keys every KEY_STEP_S from song time `start` to `end` (for the loop: 0 to the period)."""
    hw = half_width_per_metre(lens_mm)
    d_max = max_distance(plan.radius, lens_mm)
    width = layout.x_max - layout.x_min
    n = max(2, math.ceil((end - start) / KEY_STEP_S) + 1)
    times = np.linspace(start, end, n)
    hit_t = np.array([h.t for _, h in plan.hits()])
    hit_x = np.array([h.point[0] for _, h in plan.hits()])
    centre, spread = _follow(times, hit_t, hit_x, plan.period if loop else None)
    dist = np.clip((2.2 * spread + 0.8) / hw, MIN_DISTANCE, d_max)
    if not loop:  # establishing view first, easing into the follow move
        d_all = min((width / 2 + 0.5) / hw, d_max)
        ease = np.clip((times - start - ESTABLISH_S) / 1.5, 0.0, 1.0)
        ease = ease * ease * (3 - 2 * ease)
        centre = (1 - ease) * 0.0 + ease * centre
        dist = (1 - ease) * d_all + ease * dist
    room = np.maximum(width / 2 + 0.4 - dist * hw, 0.0)  # keep the view on the machine
    centre = np.clip(centre, -room, room) + (layout.x_min + layout.x_max) / 2
    if loop:
        centre[-1], dist[-1] = centre[0], dist[0]
    target = np.column_stack([centre, np.full(n, TARGET_Y), np.full(n, TARGET_Z)])
    location = target + dist[:, None] * VIEW_DIR[None, :]
    return CameraPath(times, target, location, loop)


def handles(frames: np.ndarray, values: np.ndarray, periodic: bool) -> tuple[np.ndarray, np.ndarray]:
    """Catmull-Rom Bezier handles (left, right) as (frame, value) pairs: a smooth move through every key;
    a periodic path uses its neighbours across the seam so the move loops without a kink."""
    n = len(frames)
    nxt = np.roll(values, -1)
    prv = np.roll(values, 1)
    span = np.full(n, frames[1] - frames[0]) if n > 1 else np.ones(n)
    slope = (nxt - prv) / (2 * span)
    if periodic:  # values[-1] == values[0]: the neighbours across the seam are values[1] and values[-2]
        slope[0] = slope[-1] = (values[1] - values[-2]) / (2 * span[0])
    else:
        slope[0] = slope[-1] = 0.0
    h = span / 3
    left = np.column_stack([frames - h, values - slope * h])
    right = np.column_stack([frames + h, values + slope * h])
    return left, right
