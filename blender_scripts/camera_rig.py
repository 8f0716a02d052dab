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

from blender_scripts.layout import TIER_DY, TIER_DZ, Layout
from blender_scripts.planner import LAUNCH_Y, LAUNCH_Z, Plan

SENSOR_MM = 36.0
FRAME_EDGE_PX = 1920  # the long edge of every preset (1080p, vertical 1080x1920, 4K scales it up)
MIN_MARBLE_PX = 13.0  # the rule is 12 px; one more for rounding and DOF blur
STRIKE_PX = 16.5  # a marble striking the front row: the showcase's 16 px, and a little for rounding
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
MIN_DISTANCE = 1.4
ASPECT = 9 / 16  # frame height / width (landscape presets)
FRAME_LIMIT = 0.86  # the rig keeps strikes within this of the frame's half-width/height
MEASURE_LIMIT = 0.94  # the visibility measure's bound: a 3 % margin each side (visibility.EDGE_MARGIN)
AHEAD_S, BEHIND_S = 1.0, 0.6  # each key frames the strikes this far ahead of it and behind it
COVER_ROUNDS, COVER_GROW, COVER_PULL, COVER_STEP = 40, 1.08, 0.5, 0.25


@dataclass(frozen=True)
class CameraPath:
    times: np.ndarray  # song seconds
    target: np.ndarray  # (n, 3)
    location: np.ndarray  # (n, 3)
    periodic: bool
    establish_end: float = -math.inf  # song time at which the establishing part (view or sweep) ends


def half_width_per_metre(lens_mm: float) -> float:
    return SENSOR_MM / 2 / lens_mm


def max_distance(radius: float, lens_mm: float, tiers: int = 1) -> float:
    """Distance from the default target (TARGET_Y, TARGET_Z) at which a marble at the launchers is still
    MIN_MARBLE_PX across and one striking the front row STRIKE_PX (the back tier's, with tiers)."""
    return float(distance_cap(radius, lens_mm, np.array([0.0, TARGET_Y, TARGET_Z]), tiers))


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


def _hits(plan: Plan) -> tuple[np.ndarray, np.ndarray]:
    """Song time and marble centre of every strike: the one place that reads them from the plan."""
    hits = plan.hits()
    times = np.array([h.t for _, h in hits], dtype=float)
    points = np.array([h.point for _, h in hits], dtype=float).reshape(-1, 3)
    return times, points


def project(location: np.ndarray, target: np.ndarray, points: np.ndarray, lens_mm: float) -> np.ndarray:
    """(u, v, depth) of `points` (n, 3) seen by cameras at `location` looking at `target` (each (n, 3) or
    (3,)), world +z up (the scene's TRACK_TO): u, v run -1..1 across the frame's width and height (16:9,
    the sensor's width on the long edge); depth is along the view axis."""
    fwd = np.broadcast_to(target - location, points.shape).astype(float)
    fwd = fwd / np.linalg.norm(fwd, axis=1, keepdims=True)
    right = np.cross(fwd, [0.0, 0.0, 1.0])
    right /= np.linalg.norm(right, axis=1, keepdims=True)
    up = np.cross(right, fwd)
    d = points - location
    depth = np.einsum("ij,ij->i", d, fwd)
    half = half_width_per_metre(lens_mm) * np.maximum(depth, 1e-9)
    u = np.einsum("ij,ij->i", d, right) / half
    v = np.einsum("ij,ij->i", d, up) / (half * ASPECT)
    return np.column_stack([u, v, depth])


def strikes_seen(plan: Plan, rig: CameraPath, lens_mm: float) -> tuple[np.ndarray, np.ndarray]:
    """(in view, marble px) of every strike of the plan (in `Plan.hits` order) seen by the keyed path as
    Blender interpolates it, at the strike's exact time, with the visibility measure's margin (3 % each side)
    and at 1080p: the build report's figures without Blender (not occlusion, nor the frame rounding)."""
    hit_t, hit_p = _hits(plan)
    dist = np.linalg.norm(rig.location - rig.target, axis=1)
    tgt, loc = _evaluate(rig.times, rig.target, dist, rig.periodic, hit_t)
    uvd = project(loc, tgt, hit_p, lens_mm)
    seen = (uvd[:, 2] > 0) & (np.abs(uvd[:, 0]) <= MEASURE_LIMIT) & (np.abs(uvd[:, 1]) <= MEASURE_LIMIT)
    return seen, marble_px(plan.radius, lens_mm, np.maximum(uvd[:, 2], 1e-9))


def _inside(uvd: np.ndarray) -> np.ndarray:
    return (uvd[:, 2] > 0) & (np.abs(uvd[:, 0]) <= FRAME_LIMIT) & (np.abs(uvd[:, 1]) <= FRAME_LIMIT)


def distance_cap(radius: float, lens_mm: float, target: np.ndarray, tiers: int = 1) -> np.ndarray:
    """The farthest the camera may be from `target` ((n, 3) or (3,)) along VIEW_DIR: a marble at the
    launchers stays MIN_MARBLE_PX across and one striking the front row (y = 0) STRIKE_PX, on a 1920-pixel
    frame edge; with tiers, the back tier's launchers and row. `max_distance` is this cap for the default
    target."""
    focal_px = lens_mm / SENSOR_MM * FRAME_EDGE_PX
    t = np.asarray(target, float)
    back_y, back_z = -(tiers - 1) * TIER_DY, (tiers - 1) * TIER_DZ
    behind = (t[..., 1] - LAUNCH_Y - back_y) * VIEW_DIR[1] + (t[..., 2] - LAUNCH_Z - back_z) * VIEW_DIR[2]
    row = (t[..., 1] - back_y) * VIEW_DIR[1] + (t[..., 2] - back_z - radius) * VIEW_DIR[
        2
    ]  # the row's contacts
    cap = np.minimum(2 * radius * focal_px / MIN_MARBLE_PX - behind, 2 * radius * focal_px / STRIKE_PX - row)
    return np.maximum(cap, MIN_DISTANCE)


def _frame_shot(
    points: np.ndarray, lens_mm: float, radius: float, tiers: int = 1
) -> tuple[np.ndarray, float]:
    """(target, distance) of the closest shot along VIEW_DIR that has every point inside the frame (with
    the rig's margin), no farther than the distance cap: the target at the middle of their bounding box."""
    lo, hi = points.min(axis=0), points.max(axis=0)
    target = (lo + hi) / 2
    a, b = MIN_DISTANCE, float(distance_cap(radius, lens_mm, target, tiers))
    if _inside(project(target + b * VIEW_DIR, target, points, lens_mm)).all():
        for _ in range(24):  # bisection: the farther, the more of the points' spread fits
            m = (a + b) / 2
            if _inside(project(target + m * VIEW_DIR, target, points, lens_mm)).all():
                b = m
            else:
                a = m
    return target, b


def bezier_at(times: np.ndarray, values: np.ndarray, periodic: bool, at: np.ndarray) -> np.ndarray:
    """The keyed curve (keys `values` at `times`, handles from `handles`) evaluated at song times `at`,
    as Blender does: the handles sit at a third of each gap, so time is linear in the Bezier parameter."""
    left, right = handles(times, values, periodic)
    at = np.clip(np.asarray(at, float), times[0], times[-1])
    k = np.clip(np.searchsorted(times, at, side="right") - 1, 0, len(times) - 2)
    s = (at - times[k]) / (times[k + 1] - times[k])
    p0, p1, p2, p3 = values[k], right[k, 1], left[k + 1, 1], values[k + 1]
    return (1 - s) ** 3 * p0 + 3 * (1 - s) ** 2 * s * p1 + 3 * (1 - s) * s**2 * p2 + s**3 * p3


def _evaluate(times, target, dist, periodic, at):
    """Target and camera location of the keyed path at song times `at`."""
    tgt = np.column_stack([bezier_at(times, target[:, i], periodic, at) for i in range(3)])
    loc_keys = target + dist[:, None] * VIEW_DIR[None, :]
    loc = np.column_stack([bezier_at(times, loc_keys[:, i], periodic, at) for i in range(3)])
    return tgt, loc


def _framing(times, hit_t, hit_p, lens_mm, *, radius, period, tiers=1):
    """Per key: the shot of the strikes coming up (AHEAD_S, and BEHIND_S back so both keys around a
    strike frame it); a key with none keeps the previous key's shot."""
    target = np.empty((len(times), 3))
    dist = np.empty(len(times))
    last = None
    for i, t in enumerate(times):
        dt = hit_t - t
        if period:
            dt = (dt + period / 2) % period - period / 2
        near = (dt >= -BEHIND_S) & (dt <= AHEAD_S)
        if near.any():
            last = _frame_shot(hit_p[near], lens_mm, radius, tiers)
        elif last is None:
            j = int(np.argmin(np.abs(dt)))
            last = _frame_shot(hit_p[j : j + 1], lens_mm, radius, tiers)
        target[i], dist[i] = last
    return target, dist


def _cover(times, target, dist, hit_t, hit_p, lens_mm, *, radius, periodic, frozen, group, keep, tiers=1):  # noqa: PLR0913, PLR0917
    """Widen (and re-aim) the keys around every strike the path (as Blender interpolates it) leaves out
    of the frame, until none is or the keys are at the distance cap. `frozen`: keys that keep their shot
    (a sweep); `group`: keys that change together (the static establishing view stays static);
    `keep(target, dist)` keeps the view on the machine."""
    inside = (hit_t >= times[0]) & (hit_t <= times[-1])
    ht, hp = hit_t[inside], hit_p[inside]
    for _ in range(COVER_ROUNDS):
        tgt, loc = _evaluate(times, target, dist, periodic, ht)
        bad = ~_inside(project(loc, tgt, hp, lens_mm))
        if not bad.any():
            break
        grow = np.zeros(len(times), dtype=bool)
        pull = np.zeros((len(times), 3))
        for t, p in zip(ht[bad], hp[bad], strict=True):
            k = int(np.clip(np.searchsorted(times, t, side="right") - 1, 0, len(times) - 2))
            for j in (k, k + 1):
                grow[j] = True
                pull[j] += (p - target[j]) * COVER_PULL
        if periodic:
            grow[0] = grow[-1] = grow[0] | grow[-1]
            pull[0] = pull[-1] = pull[0] + pull[-1]
        if (grow & group).any():
            pull[group] = pull[group & grow].mean(axis=0)
            grow |= group
        grow &= ~frozen
        if not grow.any():
            break
        target = target + np.where(grow[:, None], np.clip(pull, -COVER_STEP, COVER_STEP), 0.0)
        if group.any():
            dist[group] = dist[group].max()
        dist = np.where(
            grow, np.minimum(dist * COVER_GROW, distance_cap(radius, lens_mm, target, tiers)), dist
        )
        target = keep(target, dist)
    return target, dist


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
    during a fast sweep, so the views of consecutive keys overlap by at least 2/3). After the establishing
    part each key frames the strikes coming up (`_framing`, from the planned contact points), and
    `_cover` widens the keys around any strike the interpolated path would still leave out of the frame."""
    hw = half_width_per_metre(lens_mm)
    tiers = layout.tiers
    d_max = max_distance(plan.radius, lens_mm, tiers)
    width = layout.x_max - layout.x_min
    mid = (layout.x_min + layout.x_max) / 2
    hit_t, hit_p = _hits(plan)
    hit_x = hit_p[:, 0]
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
    shot_t, shot_d = _framing(
        times, hit_t, hit_p, lens_mm, radius=plan.radius, period=plan.period if loop else None, tiers=tiers
    )
    centre, dist = shot_t[:, 0], shot_d
    height = shot_t[:, 1:]
    frozen = np.zeros(n, dtype=bool)
    group = np.zeros(n, dtype=bool)
    rest = np.array([TARGET_Y, TARGET_Z])
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
                best = (seen, c, d, ease)
        _, centre, dist, ease = best
        height = (1 - ease)[:, None] * rest + ease[:, None] * height
        frozen = times <= t1
    elif not loop:  # the machine fits: a static view of all of it and of its strikes, easing into the shots
        ends = layout.arc_depth  # the row's ends stand this much nearer the camera (its arc)
        corners = np.array(
            [[x, ends - k * TIER_DY, k * TIER_DZ] for x in (layout.x_min, layout.x_max) for k in range(tiers)]
        )
        early = hit_p[hit_t <= establish_end + EASE_S]
        static_t, static_d = _frame_shot(np.vstack([corners, early]), lens_mm, plan.radius, tiers)
        static_d = max(
            static_d, min((width / 2 + 0.5) / hw, float(distance_cap(plan.radius, lens_mm, static_t, tiers)))
        )
        ease = _smooth((times - establish_end) / EASE_S)
        centre = (1 - ease) * static_t[0] + ease * centre
        dist = (1 - ease) * static_d + ease * dist
        height = (1 - ease)[:, None] * static_t[1:] + ease[:, None] * height
        group = times <= establish_end

    def keep(target: np.ndarray, d: np.ndarray) -> np.ndarray:
        room = np.maximum(width / 2 + 0.4 - d * hw, 0.0)  # keep the view on the machine
        target = target.copy()
        target[:, 0] = np.clip(target[:, 0], mid - room, mid + room)
        if loop:
            target[-1], d[-1] = target[0], d[0]
        return target

    dist = dist.copy()
    target = keep(np.column_stack([centre, height]), dist)
    target, dist = _cover(
        times, target, dist, hit_t, hit_p, lens_mm, radius=plan.radius, periodic=loop, frozen=frozen,
        group=group, keep=keep, tiers=tiers,
    )  # fmt: skip
    if loop:
        target[-1], dist[-1] = target[0], dist[0]
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
