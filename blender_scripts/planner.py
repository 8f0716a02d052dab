"""Ballistic marble plan: every note becomes a marble that touches its element exactly at the note time.

Each marble flies an analytic parabola from its lane's launcher (flight time T picked by the planner),
touches one of the element's strike points at the note time, bounces with restitution about the surface
normal (+z) and falls into the collector. The planner tries strike points, flight times and lanes in a
fixed order (deterministic) until the new marble keeps >= 2 radii (+2 % margin) from every marble already
placed, sampled at 8 steps per frame, also across the loop seam (copies shifted by +-loop length).
`place` never refuses a song for density: elements whose notes do not fit get more lanes and it plans
again; only a layout fixed by the caller (`plan`) names the notes it cannot place.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from blender_scripts import layout as layout_mod
from blender_scripts.arrangement import Arrangement
from blender_scripts.errors import ContentError
from blender_scripts.layout import Element, Layout
from blender_scripts.song import Note, Song

G = 9.81
LAUNCH_Y = -1.0
LAUNCH_Z = 0.25
FLOOR_Z = -0.45  # collector floor
FLIGHT_TIMES = (0.5, 0.45, 0.56, 0.4, 0.62, 0.36, 0.68)  # tried in this order; low arcs stay in view
FLIGHT_TIMES_MAX = max(FLIGHT_TIMES)
STEPS_PER_FRAME = 8
MARGIN = 1.02


@dataclass(frozen=True)
class Marble:
    note: Note
    element: Element
    lane: int
    launch: np.ndarray  # launch point
    impact: np.ndarray  # marble centre at contact
    v0: np.ndarray  # launch velocity
    v_in: np.ndarray  # velocity just before contact
    v_out: np.ndarray  # velocity just after the bounce
    t_launch: float
    t_impact: float
    t_exit: float  # reaches the collector floor and is hidden

    def positions(self, t: np.ndarray) -> np.ndarray:
        """Centre positions at song times t (clamped to the marble's life)."""
        t = np.clip(np.asarray(t, dtype=float), self.t_launch, self.t_exit)
        before = t < self.t_impact
        s = np.where(before, t - self.t_launch, t - self.t_impact)
        p = np.where(before[:, None], self.launch, self.impact)
        v = np.where(before[:, None], self.v0, self.v_out)
        out = p + v * s[:, None]
        out[:, 2] -= 0.5 * G * s * s
        return out

    def velocities(self, t: np.ndarray) -> np.ndarray:
        """Centre velocities at song times t (clamped like positions; the bounce takes the outgoing one)."""
        t = np.clip(np.asarray(t, dtype=float), self.t_launch, self.t_exit)
        before = t < self.t_impact
        s = np.where(before, t - self.t_launch, t - self.t_impact)
        out = np.where(before[:, None], self.v0, self.v_out).astype(float)
        out[:, 2] -= G * s
        return out


def _marble(
    note: Note, el: Element, lane: int, T: float, *, r: float, e: float, strike: float = 0.0
) -> Marble | None:
    if el.is_pad and math.hypot(el.lanes[lane], strike) + r > el.length / 2:
        return None  # off the round head
    x = el.x + el.lanes[lane]
    launch = np.array([x, LAUNCH_Y, LAUNCH_Z])
    impact = np.array([x, strike, el.top_z + r])
    v0 = (impact - launch) / T
    v0[2] += 0.5 * G * T
    v_in = v0 + np.array([0.0, 0.0, -G * T])
    v_out = np.array([v_in[0], v_in[1], -e * v_in[2]])
    # after the bounce it must be past the far edge before it sinks back to the surface again
    back = 2 * v_out[2] / G
    if impact[1] + v_out[1] * back < el.y_far + r:
        return None
    drop = impact[2] - FLOOR_Z - r
    s_exit = (v_out[2] + math.sqrt(v_out[2] ** 2 + 2 * G * drop)) / G
    return Marble(
        note, el, lane, launch, impact, v0, v_in, v_out, note.time - T, note.time, note.time + s_exit
    )


def _grid(t0: float, t1: float, step: float) -> np.ndarray:
    return np.arange(math.ceil(t0 / step - 1e-9), math.floor(t1 / step + 1e-9) + 1) * step


def pair_distance(a: Marble, b: Marble, step: float, shift: float = 0.0) -> float:
    """Min centre distance between a and b (b moved by `shift` seconds) where both are in play."""
    t0 = max(a.t_launch, b.t_launch + shift)
    t1 = min(a.t_exit, b.t_exit + shift)
    if t0 > t1:
        return math.inf
    t = _grid(t0, t1, step)
    t = np.concatenate([t, [t0, t1]])
    d = a.positions(t) - b.positions(t - shift)
    return float(np.sqrt(np.min(np.einsum("ij,ij->i", d, d))))


@dataclass(frozen=True)
class Plan:
    marbles: tuple[Marble, ...]
    radius: float
    fps: int
    period: float  # loop length (s)

    @property
    def step(self) -> float:
        return 1.0 / (self.fps * STEPS_PER_FRAME)

    def loop_instances(self) -> list[tuple[Marble, float]]:
        """(marble, shift) copies in play somewhere in [0, period], the loop scene's marbles. The closed
        interval keeps the state at t=period (one frame past the loop) equal to the state at t=0."""
        out = []
        for m in self.marbles:
            for shift in (0.0, self.period, -self.period):
                if m.t_launch + shift <= self.period and m.t_exit + shift >= 0:
                    out.append((m, shift))
        return out

    def min_distance(self, loop: bool = False) -> float:
        """Min distance over every pair of marbles in play at once (sampled at 8 steps per frame)."""
        items = self.loop_instances() if loop else [(m, 0.0) for m in self.marbles]
        items.sort(key=lambda ms: ms[0].t_launch + ms[1])
        best = math.inf
        for i, (a, sa) in enumerate(items):
            for b, sb in items[i + 1 :]:
                if b.t_launch + sb > a.t_exit + sa:
                    break
                if abs(a.launch[0] - b.launch[0]) >= best:  # x is constant per marble: a lower bound
                    continue
                d = pair_distance(a, b, self.step, sb - sa)
                if loop:  # the loop only shows [0, period): clip by re-testing inside that window
                    d = (
                        _loop_window_distance(a, sa, b, sb, step=self.step, period=self.period)
                        if d < best
                        else d
                    )
                best = min(best, d)
        return best


def _loop_window_distance(a: Marble, sa: float, b: Marble, sb: float, *, step: float, period: float) -> float:
    t0 = max(a.t_launch + sa, b.t_launch + sb, 0.0)
    t1 = min(a.t_exit + sa, b.t_exit + sb, period)
    if t0 > t1:
        return math.inf
    t = np.concatenate([_grid(t0, t1, step), [t0, t1]])
    d = a.positions(t - sa) - b.positions(t - sb)
    return float(np.sqrt(np.min(np.einsum("ij,ij->i", d, d))))


def _clear(m: Marble, lane: list[Marble], step: float, period: float, need: float, *, span: float) -> bool:
    """m keeps `need` from the lane's earlier marbles, also from their copies one loop later.
    `span`: the longest launch-to-exit time in the lane, so older marbles are skipped unseen."""
    for o in reversed(lane):  # impact times only grow along a lane
        if o.t_impact + span < m.t_launch:
            break
        if pair_distance(m, o, step) < need:
            return False
    for o in lane:  # the loop seam: early marbles come round again one period later
        if o.t_impact - FLIGHT_TIMES_MAX + period > m.t_exit:
            break
        if pair_distance(m, o, step, period) < need:
            return False
    return not (period < 4.0 and any(pair_distance(m, o, step, -period) < need for o in lane))


def _try_notes(
    song: Song, arrangement: Arrangement, layout: Layout, fps: int, period: float
) -> tuple[list[Marble], list[tuple[Note, tuple[str, int]]]]:
    """Place every note in order: the first strike point, flight time and lane that keeps clear."""
    r = arrangement.marble_radius
    e = arrangement.restitution
    step = 1.0 / (fps * STEPS_PER_FRAME)
    need = 2 * r * MARGIN
    lanes: dict[tuple[str, int, int], list[Marble]] = {}
    placed: list[Marble] = []
    failed: list[tuple[Note, tuple[str, int]]] = []
    span = 0.0
    for note in song.notes:
        key = (arrangement.instrument_of(song, note), note.pitch)
        el = layout.elements[key]
        chosen = None
        for strike in el.strikes:
            for T in FLIGHT_TIMES:
                for lane in range(len(el.lanes)):
                    m = _marble(note, el, lane, T, r=r, e=e, strike=strike)
                    if m is None:
                        continue
                    s = max(span, m.t_exit - m.t_launch)
                    if _clear(m, lanes.get((el.instrument, el.pitch, lane), []), step, period, need, span=s):
                        chosen = m
                        break
                if chosen:
                    break
            if chosen:
                break
        if chosen is None:
            failed.append((note, key))
            continue
        span = max(span, chosen.t_exit - chosen.t_launch)
        lanes.setdefault((el.instrument, el.pitch, chosen.lane), []).append(chosen)
        placed.append(chosen)
    return placed, failed


MAX_ROUNDS = 8


def place(song: Song, arrangement: Arrangement, fps: int, period: float) -> tuple[Layout, Plan]:
    """Layout and plan for any song: elements whose notes do not fit get more lanes, round by round
    (density is never a reason to refuse; only a pathological file could exhaust the rounds)."""
    extra: dict[tuple[str, int], int] = {}
    for _ in range(MAX_ROUNDS):
        stage = layout_mod.build(song, arrangement, extra)
        placed, failed = _try_notes(song, arrangement, stage, fps, period)
        if not failed:
            return stage, Plan(tuple(placed), arrangement.marble_radius, fps, period)
        counts: dict[tuple[str, int], int] = {}
        for _, key in failed:
            counts[key] = counts.get(key, 0) + 1
        for key, n in counts.items():
            extra[key] = extra.get(key, 0) + 1 + n // 8
    _refuse(song, failed)
    raise AssertionError("unreachable")


def plan(song: Song, arrangement: Arrangement, layout: Layout, fps: int, period: float) -> Plan:
    """Plan on a given layout; names the notes that do not fit (place() grows the layout instead)."""
    placed, failed = _try_notes(song, arrangement, layout, fps, period)
    if failed:
        _refuse(song, failed)
    return Plan(tuple(placed), arrangement.marble_radius, fps, period)


def _refuse(song: Song, failed: list[tuple[Note, tuple[str, int]]]) -> None:
    names = [f"track {n.track} ({n.track_name}) pitch {n.pitch} at {n.time:.3f}s" for n, _ in failed]
    shown = "; ".join(names[:20]) + (f"; and {len(names) - 20} more" if len(names) > 20 else "")
    raise ContentError(
        f"{len(names)} note(s) of {song.name} cannot be placed without marbles colliding: {shown}. "
        "Thin out repeated notes on one pitch (or use a smaller marble_radius in the arrangement)"
    )
