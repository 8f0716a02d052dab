"""Ballistic marble plan: every note is struck by a marble that touches its element exactly at the note time.

Each marble flies an analytic parabola from its lane's launcher (flight time T picked by the planner),
touches one of the element's strike points at the note time, bounces with restitution about the surface
normal (+z) and falls into the collector. A chain is one marble for two successive notes on one pitch:
it strikes the bar, and the bounce carries it onto the bar's twin behind (T solved from the gap). The
planner tries a chain first where the next note allows one, then strike points, flight times and lanes in
a fixed order (deterministic) until the new marble keeps >= 2 radii (+2 % margin) from every marble
already placed, sampled at 8 steps per frame, also across the loop seam (copies shifted by +-loop length).
`place` never refuses a song for density: elements whose notes do not fit get more lanes and it plans
again; only a layout fixed by the caller (`plan`) names the notes it cannot place.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass
from functools import cached_property

import numpy as np

from blender_scripts import layout as layout_mod
from blender_scripts.arrangement import Arrangement
from blender_scripts.errors import ContentError
from blender_scripts.layout import Element, Layout
from blender_scripts.song import Note, Song

G = 9.81
LAUNCH_Y = layout_mod.LAUNCH_Y  # the middle column's launchers (layout.py: the arc moves the others')
LAUNCH_Z = layout_mod.LAUNCH_Z  # over the element's surface (its tier's)
FLOOR_Z = layout_mod.FLOOR_Z  # the front row's collector floor
FLIGHT_TIMES = (0.5, 0.45, 0.56, 0.4, 0.62, 0.36, 0.68)  # tried in this order; low arcs stay in view
FLIGHT_TIMES_MAX = max(FLIGHT_TIMES)
STEPS_PER_FRAME = 8
MARGIN = 1.02


@dataclass(frozen=True)
class Hit:
    """One contact: the marble's centre is one radius above `element`'s surface at the note time."""

    note: Note
    element: Element
    t: float
    point: np.ndarray  # marble centre at contact
    v_in: np.ndarray  # velocity just before contact
    v_out: np.ndarray  # velocity just after the bounce


@dataclass(frozen=True)
class Marble:
    """One marble's flight: launched, then one contact per hit (two for a chain), then the collector."""

    hits: tuple[Hit, ...]
    lane: int
    launch: np.ndarray  # launch point
    v0: np.ndarray  # launch velocity
    t_launch: float
    t_exit: float  # reaches the collector floor and is hidden

    @property
    def note(self) -> Note:  # the first note (names the marble)
        return self.hits[0].note

    @property
    def element(self) -> Element:  # the front element its lane belongs to
        return self.hits[0].element

    @property
    def t_impact(self) -> float:  # the first contact
        return self.hits[0].t

    @cached_property
    def knots(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(start times, start points, start velocities) of the flight's parabolic segments."""
        times = np.array([self.t_launch, *(h.t for h in self.hits)])
        points = np.array([self.launch, *(h.point for h in self.hits)])
        vels = np.array([self.v0, *(h.v_out for h in self.hits)])
        return times, points, vels

    def _segment(self, t: np.ndarray):
        times, points, vels = self.knots
        t = np.clip(np.asarray(t, dtype=float), self.t_launch, self.t_exit)
        k = np.searchsorted(times, t, side="right") - 1  # a contact time takes the outgoing segment
        return t - times[k], points[k], vels[k]

    def positions(self, t: np.ndarray) -> np.ndarray:
        """Centre positions at song times t (clamped to the marble's life)."""
        s, p, v = self._segment(t)
        out = p + v * s[:, None]
        out[:, 2] -= 0.5 * G * s * s
        return out

    def velocities(self, t: np.ndarray) -> np.ndarray:
        """Centre velocities at song times t (clamped like positions; a bounce takes the outgoing one)."""
        s, _, v = self._segment(t)
        out = v.astype(float)
        out[:, 2] -= G * s
        return out


def _exit_after(
    point: np.ndarray, v_out: np.ndarray, ahead: tuple[Element, ...], r: float, floor_z: float
) -> float | None:
    """Seconds from the last bounce to the collector floor, or None when the marble would not fly clear
    over an element ahead of it in its column (a twin bar it is not meant to strike): coming down short
    of it, it would still run into its front face on the way to the floor."""
    back = 2 * v_out[2] / G  # back at the height it bounced from (a tier's surfaces share one height)
    y_down = point[1] + v_out[1] * back
    if any(y_down <= el.y_far + r for el in ahead):
        return None
    drop = point[2] - floor_z - r
    return (v_out[2] + math.sqrt(v_out[2] ** 2 + 2 * G * drop)) / G


def _marble(
    note: Note, el: Element, lane: int, T: float, *, r: float, e: float, strike: float = 0.0,
    ahead: tuple[Element, ...] = (),
) -> Marble | None:  # fmt: skip
    if el.is_pad and math.hypot(el.lane_x(lane), strike) + r > el.length / 2:
        return None  # off the round head
    x = el.x + el.lane_x(lane)
    launch = np.array([x, el.launch_y, el.launch_z])
    impact = np.array([x, el.y + strike, el.top_z + r])
    v0 = (impact - launch) / T
    v0[2] += 0.5 * G * T
    v_in = v0 + np.array([0.0, 0.0, -G * T])
    v_out = np.array([v_in[0], v_in[1], -e * v_in[2]])
    # after the bounce it must be past the far edge before it sinks back to the surface again
    back = 2 * v_out[2] / G
    if impact[1] + v_out[1] * back < el.y_far + r:
        return None
    s_exit = _exit_after(impact, v_out, ahead, r, el.floor_z)
    if s_exit is None:
        return None
    hit = Hit(note, el, note.time, impact, v_in, v_out)
    return _within(Marble((hit,), lane, launch, v0, note.time - T, note.time + s_exit), el, r)


CHAIN_T = (0.3, 0.95)  # launch-to-first-contact flight times a chain may use (s)


def chain_flight(gap: float, *, r: float, e: float) -> float | None:
    """The launch flight time T after which a marble that strikes a front bar bounces onto its twin
    exactly `gap` seconds later (the lob of the two solutions), or None when no T in CHAIN_T does.
    The bounce's upward speed e*|v_in| must bring it back to the surface height after `gap`."""
    h = LAUNCH_Z - r  # launch height above the contact centre (launchers stand LAUNCH_Z over the surface)
    v_in = G * gap / (2 * e)
    disc = v_in * v_in - 2 * G * h
    if disc < 0:
        return None
    T = (v_in + math.sqrt(disc)) / G
    return T if CHAIN_T[0] <= T <= CHAIN_T[1] else None


def _chain(
    first: Note, second: Note, el: Element, twin: Element, lane: int, *, r: float, e: float
) -> Marble | None:
    """One marble for two notes on one pitch: it strikes the front bar on `first` and bounces on onto
    the twin bar behind it on `second`. Horizontal speed is constant, so where it lands on the front
    bar fixes where it lands on the twin; the landing is chosen to put the second contact mid-twin."""
    gap = second.time - first.time
    T = chain_flight(gap, r=r, e=e)
    if T is None:
        return None
    k = gap / T  # y travelled between the contacts, per metre travelled from the launcher
    reach = el.length / 2 - 1.5 * r
    ly = el.launch_y
    y1 = min(max((twin.y + ly * k) / (1 + k), el.y - reach), el.y + reach)
    y2 = y1 + (y1 - ly) * k
    if abs(y2 - twin.y) > twin.length / 2 - 1.5 * r:
        return None
    x = el.x + el.lane_x(lane)
    launch = np.array([x, ly, el.launch_z])
    p1 = np.array([x, y1, el.top_z + r])
    v0 = (p1 - launch) / T
    v0[2] += 0.5 * G * T
    v_in1 = v0 + np.array([0.0, 0.0, -G * T])
    v_out1 = np.array([0.0, v0[1], -e * v_in1[2]])
    p2 = np.array([x, y2, twin.top_z + r])
    v_in2 = np.array([0.0, v0[1], -v_out1[2]])
    v_out2 = np.array([0.0, v0[1], e * v_out1[2]])
    if y2 + v_out2[1] * 2 * v_out2[2] / G < twin.y_far + r:
        return None  # would come down on the twin a third time
    s_exit = _exit_after(p2, v_out2, (), r, twin.floor_z)
    hits = (Hit(first, el, first.time, p1, v_in1, v_out1), Hit(second, twin, second.time, p2, v_in2, v_out2))
    return _within(Marble(hits, lane, launch, v0, first.time - T, second.time + s_exit), el, r)


def _within(m: Marble, el: Element, r: float) -> Marble | None:
    """m, unless it leaves its tier's room (layout.py: tiers): its centre above `el.ceiling_z` less a radius
    at the top of any arc, or not in the collector before `el.exit_y_max`. A one-tier machine has no bound."""
    if el.ceiling_z == math.inf and el.exit_y_max == math.inf:
        return m
    _, points, vels = m.knots
    tops = points[:, 2] + np.maximum(vels[:, 2], 0.0) ** 2 / (2 * G)  # each segment's highest point
    if float(tops.max()) > el.ceiling_z - r:
        return None
    if float(m.positions(np.array([m.t_exit]))[0, 1]) > el.exit_y_max:
        return None
    return m


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

    def hits(self) -> list[tuple[Marble, Hit]]:
        """Every contact (one per note), in time order."""
        return sorted(
            ((m, h) for m in self.marbles for h in m.hits), key=lambda mh: (mh[1].t, mh[1].note.index)
        )

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
    for o in reversed(lane):  # first contacts only grow along a lane
        if o.t_impact + span < m.t_launch:
            break
        if pair_distance(m, o, step) < need:
            return False
    for o in lane:  # the loop seam: early marbles come round again one period later
        if o.t_impact - LEAD_MAX + period > m.t_exit:
            break
        if pair_distance(m, o, step, period) < need:
            return False
    return not (period < 4.0 and any(pair_distance(m, o, step, -period) < need for o in lane))


LEAD_MAX = max(FLIGHT_TIMES_MAX, CHAIN_T[1])  # the longest launch-to-first-contact time


def _candidates(note: Note, el: Element, twin: Element | None, *, r: float, e: float):
    """Single-strike flights for `note`, in the planner's order of preference: the front bar (its
    strike points, flight times, lanes), then the twin bar behind it if there is one."""
    chain_lanes = range(twin.first_lane, len(el.lanes)) if twin else range(0)
    for strike in el.strikes:
        for T in FLIGHT_TIMES:
            for lane in range(len(el.lanes)):
                ahead = (twin,) if lane in chain_lanes else ()
                yield _marble(note, el, lane, T, r=r, e=e, strike=strike, ahead=ahead)
    if twin:
        for strike in twin.strikes:
            for T in FLIGHT_TIMES:
                for lane in chain_lanes:
                    yield _marble(note, twin, lane, T, r=r, e=e, strike=strike)


def _try_notes(
    song: Song, arrangement: Arrangement, layout: Layout, fps: int, period: float
) -> tuple[list[Marble], list[tuple[Note, tuple[str, int]]]]:
    """Place every note in order: a chain onto the twin bar where the next note on the same pitch
    allows one, else the first strike point, flight time and lane that keeps clear."""
    r = layout.radius
    e = arrangement.restitution
    step = 1.0 / (fps * STEPS_PER_FRAME)
    need = 2 * r * MARGIN
    keys = [(arrangement.instrument_of(song, n), n.pitch) for n in song.notes]
    following: dict[int, int] = {}  # note position -> the next note's position on the same element
    last: dict[tuple[str, int], int] = {}
    for i, key in enumerate(keys):
        if key in last:
            following[last[key]] = i
        last[key] = i
    lanes: dict[tuple[str, int, int], list[Marble]] = {}
    placed: list[Marble] = []
    failed: list[tuple[Note, tuple[str, int]]] = []
    taken: set[int] = set()  # positions already struck as a chain's second note
    span = 0.0

    def fits(m: Marble | None) -> bool:
        if m is None:
            return False
        s = max(span, m.t_exit - m.t_launch)
        return _clear(
            m, lanes.get((m.element.instrument, m.element.pitch, m.lane), []), step, period, need, span=s
        )

    for i, note in enumerate(song.notes):
        if i in taken:
            continue
        key = keys[i]
        el, twin = layout.elements[key], layout.twins.get(key)
        chosen = None
        j = following.get(i)
        if twin and j is not None and j not in taken:
            second = song.notes[j]
            for lane in range(twin.first_lane, len(el.lanes)):
                m = _chain(note, second, el, twin, lane, r=r, e=e)
                if fits(m):
                    chosen = m
                    taken.add(j)
                    break
        if chosen is None:
            chosen = next((m for m in _candidates(note, el, twin, r=r, e=e) if fits(m)), None)
        if chosen is None:
            failed.append((note, key))
            continue
        span = max(span, chosen.t_exit - chosen.t_launch)
        lanes.setdefault((el.instrument, el.pitch, chosen.lane), []).append(chosen)
        placed.append(chosen)
    return placed, failed


MAX_ROUNDS = 8


def chainable(song: Song, arrangement: Arrangement, radius: float) -> frozenset[tuple[str, int]]:
    """Elements with two successive notes a single marble can strike (front bar, then its twin)."""
    times: dict[tuple[str, int], list[float]] = {}
    for n in song.notes:
        times.setdefault((arrangement.instrument_of(song, n), n.pitch), []).append(n.time)
    return frozenset(
        key
        for key, ts in times.items()
        if any(chain_flight(b - a, r=radius, e=arrangement.restitution) for a, b in itertools.pairwise(ts))
    )


def place(song: Song, arrangement: Arrangement, fps: int, period: float) -> tuple[Layout, Plan]:
    """Layout and plan for any song: bars with chainable repeats get a twin, and elements whose notes
    do not fit get more lanes, round by round (density is never a reason to refuse; only a
    pathological file could exhaust the rounds)."""
    extra: dict[tuple[str, int], int] = {}
    twins = chainable(song, arrangement, layout_mod.radius_for(song, arrangement))
    for _ in range(MAX_ROUNDS):
        stage = layout_mod.build(song, arrangement, extra, twins)
        placed, failed = _try_notes(song, arrangement, stage, fps, period)
        if not failed:
            return stage, Plan(tuple(placed), stage.radius, fps, period)
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
    return Plan(tuple(placed), layout.radius, fps, period)


def _refuse(song: Song, failed: list[tuple[Note, tuple[str, int]]]) -> None:
    names = [f"track {n.track} ({n.track_name}) pitch {n.pitch} at {n.time:.3f}s" for n, _ in failed]
    shown = "; ".join(names[:20]) + (f"; and {len(names) - 20} more" if len(names) > 20 else "")
    raise ContentError(
        f"{len(names)} note(s) of {song.name} cannot be placed without marbles colliding: {shown}. "
        "Thin out repeated notes on one pitch (or use a smaller marble_radius in the arrangement)"
    )
