"""The camera path, computed from the layout and the plan (pure numpy; scene.py keys it).

The camera looks at the machine from the audience side (+y, above). The main scene opens on an
establishing part, then follows where the music is: the target moves to the strike-weighted centre of the
next seconds, the distance widens with the spread of the strikes. The distance never exceeds the one at
which a marble at the launchers (the farthest a marble gets from the camera) is MIN_MARBLE_PX across on a
1920-pixel frame edge (`max_distance`). If the whole machine fits in the view at that distance, the
establishing part is a static view of all of it; if not (a very wide machine), it is a sweep at that
distance from one end of the machine to the other, so every element is on screen at some point of it,
its duration scaled by the width (PAN_S_PER_VIEW per view width, within SWEEP_MIN_S..SWEEP_MAX_S).
`view_x_range` says which x the view covers. The loop's path is periodic: its state at the loop's end
equals its start. Keys are Bezier with monotone Catmull-Rom handles (`handles`): the curve never
overshoots its keys, so the distance cap that holds at every key holds between them too.
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
ESTABLISH_S = 2.5  # the static establishing view (a machine that fits)
EASE_S = 1.5  # from the establishing part into the follow move
EASE_MAX_S = 4.0  # a longer ease where the follow move starts far from where the sweep ended
PAN_S_PER_VIEW = 1.75  # the sweep's pace: one view width per PAN_S_PER_VIEW seconds
SWEEP_MIN_S, SWEEP_MAX_S = 3.0, 16.0
SWEEP_HOLD_S = 1.0  # the sweep holds its first view this long (the first frame is a settled shot)
SWEEP_RAMP_S = 1.0  # it speeds up and slows down over this long; constant speed in between
SIGMA_S = 1.2  # how far ahead/behind the follow move looks
MIN_DISTANCE = 1.4


@dataclass(frozen=True)
class CameraPath:
    times: np.ndarray  # song seconds
    target: np.ndarray  # (n, 3)
    location: np.ndarray  # (n, 3)
    periodic: bool
    establish_end: float = -math.inf  # song time at which the establishing part (view or sweep) ends


def half_width_per_metre(lens_mm: float) -> float:
    return SENSOR_MM / 2 / lens_mm


def max_distance(radius: float, lens_mm: float) -> float:
    """Target distance at which a marble at the launchers is still MIN_MARBLE_PX across."""
    focal_px = lens_mm / SENSOR_MM * FRAME_EDGE_PX
    extra = float(np.dot(VIEW_DIR, [0.0, TARGET_Y - LAUNCH_Y, TARGET_Z - LAUNCH_Z]))  # launchers sit behind
    return max(MIN_DISTANCE, 2 * radius * focal_px / MIN_MARBLE_PX - extra)


def view_x_range(target_x, dist, lens_mm: float, *, row_y: float = 0.0, row_z: float = 0.0):
    """(x_lo, x_hi) the view covers on the elements' row (y = row_y, z = row_z) with the target at x =
    target_x (y, z = TARGET_Y, TARGET_Z) and the camera `dist` away along VIEW_DIR; arrays broadcast.
    The row is nearer the camera than the target, so it sees a little less than the target's plane. This
    is the width along the frame's long edge (landscape presets); a vertical frame sees 9/16 of it."""
    depth = np.asarray(dist, float) - float(np.dot(VIEW_DIR, [0.0, row_y - TARGET_Y, row_z - TARGET_Z]))
    half = half_width_per_metre(lens_mm) * depth
    return np.asarray(target_x, float) - half, np.asarray(target_x, float) + half


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


def _hits(plan: Plan) -> tuple[np.ndarray, np.ndarray]:
    """Song time and x of every strike: the one place that reads them from the plan."""
    hits = plan.hits()
    times = np.array([h.t for _, h in hits], dtype=float)
    xs = np.array([h.point[0] for _, h in hits], dtype=float)
    return times, xs


def _grid(a: float, b: float, step: float) -> np.ndarray:
    return np.linspace(a, b, max(2, math.ceil((b - a) / step - 1e-9) + 1))


def _smooth(x: np.ndarray) -> np.ndarray:
    x = np.clip(x, 0.0, 1.0)
    return x * x * (3 - 2 * x)


def _pan(tau: np.ndarray, duration: float, ramp: float) -> np.ndarray:
    """0 -> 1 over `duration`: constant speed, reached and left over `ramp` at constant acceleration."""
    v = 1.0 / (duration - ramp)
    tau = np.clip(tau, 0.0, duration)
    rest = duration - tau
    return np.where(
        tau < ramp,
        v * tau**2 / (2 * ramp),
        np.where(rest < ramp, 1 - v * rest**2 / (2 * ramp), v * (tau - ramp / 2)),
    )


def path(plan: Plan, layout: Layout, lens_mm: float, *, start: float, end: float, loop: bool) -> CameraPath:
    """Keys from song time `start` to `end` (for the loop: 0 to the period), every KEY_STEP_S (closer
    during a fast sweep, so the views of consecutive keys overlap by at least 2/3)."""
    hw = half_width_per_metre(lens_mm)
    d_max = max_distance(plan.radius, lens_mm)
    width = layout.x_max - layout.x_min
    mid = (layout.x_min + layout.x_max) / 2
    hit_t, hit_x = _hits(plan)
    room_max = max(width / 2 + 0.4 - d_max * hw, 0.0)  # how far the target may go from the middle at d_max
    # the whole machine does not fit in the view (room_max 0: it does all but the static view's margin)
    sweep = not loop and (width / 2 + 0.5) / hw > d_max and room_max > 0
    if sweep:
        lo, hi = view_x_range(0.0, d_max, lens_mm)
        view = float(hi - lo)
        travel = 2 * room_max
        t0 = start + SWEEP_HOLD_S
        duration = float(np.clip(travel / view * PAN_S_PER_VIEW, SWEEP_MIN_S, SWEEP_MAX_S))
        duration = min(duration, max(end - t0, KEY_STEP_S))  # a scene shorter than the sweep: a faster one
        ramp = min(SWEEP_RAMP_S, duration / 3)
        step = min(KEY_STEP_S, view / 3 / (travel / (duration - ramp)))
        t1 = t0 + duration
        times = np.concatenate([_grid(start, t0, KEY_STEP_S), _grid(t0, t1, step)[1:]])
        if end > t1:
            times = np.concatenate([times, _grid(t1, end, KEY_STEP_S)[1:]])
        establish_end = t1
    else:
        times = _grid(start, end, KEY_STEP_S)
        establish_end = start if loop else start + ESTABLISH_S
    n = len(times)
    centre, spread = _follow(times, hit_t, hit_x, plan.period if loop else None)
    dist = np.clip((2.2 * spread + 0.8) / hw, MIN_DISTANCE, d_max)
    if sweep:
        # Which way: the one that shows more strikes as they happen, over the sweep and the ease after it.
        # A fixed end would often be the wrong one on a wide machine: the camera would start far from the
        # first notes, or end far from where the music is and have to pan back across all of it. On a tie
        # it starts at screen left, at the low notes (+x: layout.py places them first and mirrors x for the
        # camera at +y), the way a keyboard reads.
        music = float(np.clip(np.interp(t1, times, centre), mid - room_max, mid + room_max))
        best = None
        for a in (mid + room_max, mid - room_max):
            b = 2 * mid - a
            ease_s = float(np.clip(abs(music - b) / view * PAN_S_PER_VIEW, EASE_S, EASE_MAX_S))
            ease = _smooth((times - t1) / ease_s)
            c = (1 - ease) * (a + (b - a) * _pan(times - t0, duration, ramp)) + ease * centre
            d = (1 - ease) * d_max + ease * dist
            early = hit_t <= t1 + ease_s
            lo, hi = view_x_range(
                np.interp(hit_t[early], times, c), np.interp(hit_t[early], times, d), lens_mm
            )
            seen = int(((lo <= hit_x[early]) & (hit_x[early] <= hi)).sum())
            if best is None or seen > best[0]:
                best = (seen, c, d)
        _, centre, dist = best
    elif not loop:  # the machine fits: a static view of all of it, easing into the follow move
        d_all = min((width / 2 + 0.5) / hw, d_max)
        ease = _smooth((times - establish_end) / EASE_S)
        centre = (1 - ease) * mid + ease * centre
        dist = (1 - ease) * d_all + ease * dist
    room = np.maximum(width / 2 + 0.4 - dist * hw, 0.0)  # keep the view on the machine
    centre = np.clip(centre, mid - room, mid + room)
    if loop:
        centre[-1], dist[-1] = centre[0], dist[0]
    target = np.column_stack([centre, np.full(n, TARGET_Y), np.full(n, TARGET_Z)])
    location = target + dist[:, None] * VIEW_DIR[None, :]
    return CameraPath(times, target, location, loop, establish_end)


def handles(frames: np.ndarray, values: np.ndarray, periodic: bool) -> tuple[np.ndarray, np.ndarray]:
    """Bezier handles (left, right) as (frame, value) pairs for keys at any spacing: Catmull-Rom slopes,
    made monotone (flat at a local extreme or plateau, at most 3x either neighbouring secant: Fritsch-
    Carlson), so the curve passes through every key and never goes beyond its two keys in between. A
    periodic path (values[-1] == values[0]) uses its neighbours across the seam so it loops without a kink;
    an open one starts and ends at rest."""
    f = np.asarray(frames, dtype=float)
    v = np.asarray(values, dtype=float)
    if len(f) < 2:
        return np.column_stack([f - 1 / 3, v]), np.column_stack([f + 1 / 3, v])
    gap = np.diff(f)
    sec = np.diff(v) / gap
    if periodic:
        sl, sr = np.concatenate([sec[-1:], sec]), np.concatenate([sec, sec[:1]])
        gl, gr = np.concatenate([gap[-1:], gap]), np.concatenate([gap, gap[:1]])
    else:
        sl, sr = np.concatenate([[0.0], sec]), np.concatenate([sec, [0.0]])
        gl, gr = np.concatenate([gap[:1], gap]), np.concatenate([gap, gap[-1:]])
    slope = (sl * gl + sr * gr) / (gl + gr)  # (next - previous) / (their frame distance)
    limit = 3 * np.minimum(np.abs(sl), np.abs(sr))
    slope = np.where(sl * sr > 0, np.sign(slope) * np.minimum(np.abs(slope), limit), 0.0)
    left = np.column_stack([f - gl / 3, v - slope * gl / 3])
    right = np.column_stack([f + gr / 3, v + slope * gr / 3])
    return left, right
