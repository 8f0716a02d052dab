"""Where every struck element stands: one bar per pitch per mallet instrument, one pad per drum sound.

Elements stand in one row along x; each has its own vertical "column" (a slab of x) that only its own
marbles ever enter, split into lanes at least 2.2 marble radii apart. That is what lets the planner
check collisions lane by lane and what keeps marbles away from elements they are not meant to strike.
A busy element gets more lanes (and a wider slab): as many as the notes it must take at once, plus any
the planner asks for when a dense passage does not fit; each lane has several strike points along y.
A bar whose pitch repeats at a chainable gap gets a twin (same pitch, TWIN_Y behind, over its last lane),
where a marble bouncing off the bar comes down: a chain. The marble radius follows the song's density.
The row bends into an arc facing the camera (`arc_depth`): each column (its launchers, its bar, its twin)
moves along y as one, so the flights are the straight row's, shifted, and the columns stay apart.
"""

from __future__ import annotations

import dataclasses
import math
from collections import defaultdict
from dataclasses import dataclass, field

import numpy as np

from blender_scripts.arrangement import BARRED, Arrangement
from blender_scripts.song import AT_ONCE_S, Song

NAMES = ("C", "C#", "D", "D#", "E", "F", "F#", "G", "G#", "A", "A#", "B")
GM_DRUMS = {
    35: "kick", 36: "kick", 37: "stick", 38: "snare", 39: "clap", 40: "snare", 41: "tom_low", 42: "hihat",
    43: "tom_low", 44: "hihat_pedal", 45: "tom_mid", 46: "hihat_open", 47: "tom_mid", 48: "tom_high",
    49: "crash", 50: "tom_high", 51: "ride", 52: "china", 53: "ride_bell", 54: "tambourine", 55: "splash",
    56: "cowbell", 57: "crash", 59: "ride",
}  # fmt: skip
FLOOR_Z = -0.45  # the front row's collector floor: a marble reaching it is hidden
CYMBALS = {"crash", "ride", "china", "ride_bell", "splash", "hihat", "hihat_open", "hihat_pedal"}


def note_name(pitch: int) -> str:
    return f"{NAMES[pitch % 12]}{pitch // 12 - 1}"


def drum_sound(pitch: int) -> str:
    return GM_DRUMS.get(pitch, "perc")


@dataclass(frozen=True)
class Element:
    name: str
    instrument: str
    pitch: int
    x: float
    top_z: float
    length: float  # extent along y (bars) or diameter (pads)
    width: float  # extent along x
    lanes: tuple[float, ...]  # x offsets of the marble lanes over this element
    pan: float  # -1 left .. +1 right
    strikes: tuple[float, ...] = (0.0,)  # y offsets of the strike points along the surface, preferred first
    y: float = 0.0  # centre along y: the column's arc offset, plus TWIN_Y for a twin bar
    first_lane: int = 0  # a twin's lanes are its front element's lanes from this index on
    column_y: float = 0.0  # the arc's (or the tier's) offset of this column (launchers, bar, twin) along y
    tier: int = 0  # 0: the front row; a tier k stands TIER_DY further back and TIER_DZ higher per step
    floor_z: float = FLOOR_Z  # where its marbles drop into the collector and are hidden
    ceiling_z: float = math.inf  # its marbles' centres stay below this (the tray of the tier above)
    exit_y_max: float = math.inf  # its marbles are hidden before they pass this y (over the tier in front)

    @property
    def launch_y(self) -> float:
        """y of the launchers of this element's column."""
        return LAUNCH_Y + self.column_y

    @property
    def launch_z(self) -> float:
        """z of the launchers of this element's column (LAUNCH_Z over its tier's surface)."""
        return LAUNCH_Z + self.top_z

    @property
    def is_pad(self) -> bool:
        return self.instrument == "drums"

    @property
    def y_near(self) -> float:
        return self.y - self.length / 2

    @property
    def y_far(self) -> float:
        """+y edge of the strike surface: a bouncing marble must be past it before it drops again."""
        return self.y + self.length / 2

    def lane_x(self, lane: int) -> float:
        """x offset of the column's lane `lane` (numbered across the front element's lanes)."""
        return self.lanes[lane - self.first_lane]


@dataclass(frozen=True)
class Layout:
    elements: dict[tuple[str, int], Element]  # the front row
    spacing: float
    x_min: float
    x_max: float
    radius: float = 0.02  # the marble radius everything here is sized for
    twins: dict[tuple[str, int], Element] = field(default_factory=dict)  # bars behind, for chains
    arc_depth: float = 0.0  # how far the row's ends stand nearer the camera than its middle
    tiers: int = 1  # rows of elements, one behind and above the other (a machine too wide for one view)

    def all_elements(self) -> list[Element]:
        return [*self.elements.values(), *self.twins.values()]

    def arc_y(self, x: float) -> float:
        """The row's arc at `x`: 0 in the middle, arc_depth at either end (a parabola)."""
        half = max((self.x_max - self.x_min) / 2, 1e-6)
        return self.arc_depth * ((x - (self.x_max + self.x_min) / 2) / half) ** 2


LAUNCH_Y = -1.0  # the launchers' row behind the elements (the arc moves each column's along with it)
LAUNCH_Z = 0.25  # the launchers' height over their elements' surface
BAR_LANES = 1  # the fewest lanes a bar gets; the planner adds lanes where its notes do not fit
FAMILY_GAP = 3.0  # marble radii between two instruments
DRUM_LANES = 2  # the fewest lanes a drum head gets (one more than the notes it takes at once)
HEAD_GAP = 0.6  # marble radii between two drum heads (a head's lanes are a radius inside its rim)
TWIN_Y = 0.8  # where a bar's twin stands behind it: where a marble bouncing off the bar comes down
CHAIN_LANES = 1  # the front bar's last lanes, which its twin covers
ARC_PER_WIDTH = 0.15  # the row's arc: its ends this much of its width nearer the camera than its middle
ARC_MAX = 0.8  # metres, however wide the row
ARC_FRAME = 0.8  # the arc's ends stay within this of the view's half-width (the camera rig keeps 0.86)
# Tiers: a row wider than one view (at the camera's distance cap a 1920-pixel frame holds about 200 marble
# radii of row: lanes 2.2 radii apart, marbles >= 16.5 px) is cut into tiers, each TIER_DY behind and TIER_DZ
# above the one in front, so the frame's height holds what its width cannot. Lanes of different tiers may
# share x, so their marbles must never meet: a tier's marbles stay below the tray of the tier above
# (ceiling_z), and an upper tier's marbles drop into their tray TIER_FLOOR under their surface before they
# pass over the tier in front (exit_y_max). The planner holds every marble to both (planner._within).
TIER_SPLIT_R = 215.0  # a row up to this many marble radii wide stays one row
TIER_WIDTH_R = 160.0  # a wider one is cut into tiers about this wide, or MAX_TIERS
MAX_TIERS = 3
TIER_DY, TIER_DZ = 1.5, 0.95
TIER_FLOOR = -0.15  # an upper tier's tray, under its surface
TIER_TRAY = 0.03  # the tray's thickness
TIER_EXIT_Y = 1.0  # an upper tier's marbles are in the tray before this far in front of its row
# The smallest marble radius for n tiers: the tiers' strikes must fit the frame's height at the distance
# at which their marbles are still >= 16.5 px (camera_rig.distance_cap); the rows' depth in the view is fixed
# in metres (TIER_DY, TIER_DZ), the distance grows with the radius.
TIER_RADIUS = {2: 0.028, 3: 0.04}
RADIUS_RANGE = (0.014, 0.03)  # automatic marble radius: dense songs get small marbles, sparse ones big
RADIUS_AT_1_NPS = 0.06  # radius = this / sqrt(notes per second), clipped to RADIUS_RANGE


def radius_for(song: Song, arrangement: Arrangement) -> float:
    """The arrangement's marble radius, else one sized to the song's density: the busiest 10 s decide
    (small marbles and narrow lanes where notes crowd, big readable ones where they do not)."""
    if arrangement.marble_radius is not None:
        return arrangement.marble_radius
    times = sorted(n.time for n in song.notes)
    window = 10.0
    rate = most_within(times, window) / min(window, max(1.0, times[-1] - times[0]))
    lo, hi = RADIUS_RANGE
    return round(min(hi, max(lo, RADIUS_AT_1_NPS / math.sqrt(max(rate, 1e-9)))), 4)


CROWD_S = AT_ONCE_S  # notes on one element closer than this need lanes of their own (song's bound)


def crowding(song: Song, arrangement: Arrangement) -> dict[tuple[str, int], int]:
    """Per element: the most notes it takes within CROWD_S (unisons across tracks, flams, tremolos)."""
    times: dict[tuple[str, int], list[float]] = defaultdict(list)
    for n in song.notes:
        times[(arrangement.instrument_of(song, n), n.pitch)].append(n.time)
    return {key: most_within(sorted(ts), CROWD_S) for key, ts in times.items()}


def most_within(times: list[float], window: float) -> int:
    """The most of the sorted `times` that fall within `window` seconds of one another."""
    best, j = 1, 0
    for i, t in enumerate(times):
        while times[j] < t - window:
            j += 1
        best = max(best, i - j + 1)
    return best


def _strikes(size: float, r: float) -> tuple[float, ...]:
    """Strike points along the surface: the middle first, then a quarter either side if the marble fits."""
    off = round(0.25 * size, 6)
    return (0.0, -off, off) if off + 1.2 * r <= size / 2 else (0.0,)


def _row_order(families: list[str], twins: frozenset[tuple[str, int]]) -> list[str]:
    """The families along the row: those with the most twin bars in the middle, the others alternately
    either side. A twin stands TWIN_Y nearer the camera than the row, so perspective pushes it out from the
    frame's centre by about a quarter more than its bar: at the row's ends it is the first strike to leave
    a frame that holds the whole machine. Without twins, the arrangement's order."""
    count = {f: sum(1 for i, _ in twins if i == f) if f != "drums" else 0 for f in families}  # no drum twins
    if not any(count.values()):
        return families
    row: list[str] = []
    for k, f in enumerate(sorted(families, key=lambda f: -count[f])):  # stable: the arrangement's order
        row.insert(len(row) if k % 2 else 0, f)
    return row


def build(
    song: Song,
    arrangement: Arrangement,
    extra_lanes: dict[tuple[str, int], int] | None = None,
    twins: frozenset[tuple[str, int]] = frozenset(),
) -> Layout:
    """The row of elements; `twins`: bars that get a twin behind them (the planner picks those with
    repeated notes a marble can chain across)."""
    used: dict[str, set[int]] = {}
    for n in song.notes:
        used.setdefault(arrangement.instrument_of(song, n), set()).add(n.pitch)
    crowd = crowding(song, arrangement)
    extra = extra_lanes or {}
    order = _row_order([i for i in (*BARRED, "drums") if i in used], twins)
    r = radius_for(song, arrangement)
    placed, x_max = _place(order, used, crowd, extra, twins, r=r)
    tiers = (
        1 if x_max / r <= TIER_SPLIT_R else min(MAX_TIERS, len(placed), math.ceil(x_max / r / TIER_WIDTH_R))
    )
    if tiers > 1 and arrangement.marble_radius is None and r < TIER_RADIUS[tiers]:
        r = TIER_RADIUS[tiers]
        placed, x_max = _place(order, used, crowd, extra, twins, r=r)
    dx = max(0.1, 5.0 * r)
    center = x_max / 2
    depth = arc_depth(x_max, r, arrangement.camera.lens) if tiers == 1 else 0.0
    elements = {}
    for k, row in enumerate(_cut(placed, tiers)):
        lo, hi = row[0][2] - row[0][4] / 2, row[-1][2] + row[-1][4] / 2
        mid = (lo + hi) / 2  # each tier centred on x = 0
        top = k * TIER_DZ
        above = k + 1 < tiers
        for instrument, p, cx, size, slab, lanes in row:
            label = drum_sound(p) if instrument == "drums" else note_name(p)
            arc = round(depth * ((cx - center) / max(center, 1e-6)) ** 2, 9)  # Layout.arc_y of its x
            y = round(arc - k * TIER_DY, 9)
            elements[(instrument, p)] = Element(
                name=f"{instrument}_{p:03d}_{label}",
                instrument=instrument,
                pitch=p,
                x=mid - cx,  # the camera looks from +y, so low notes (placed first) end up on screen left
                y=y,
                column_y=y,
                top_z=top,
                length=size,
                # a bar is as wide as its slab less a gap, and always wide enough for a marble on every lane
                width=(size if instrument == "drums" else max(slab - 0.4 * r, lanes[-1] - lanes[0] + 2 * r)),
                lanes=lanes,
                pan=max(-0.8, min(0.8, (cx - center) / max(center, 1e-6) * 0.8)),  # low left, high right
                strikes=_strikes(size, r),
                tier=k,
                floor_z=top + (FLOOR_Z if k == 0 else TIER_FLOOR),
                ceiling_z=(top + TIER_DZ + TIER_FLOOR - TIER_TRAY) if above else math.inf,
                exit_y_max=(y + TIER_EXIT_Y) if k > 0 else math.inf,
            )
    half = max((abs(el.x) + el.width / 2 for el in elements.values()), default=0.0) if tiers > 1 else center
    twin_els = {}
    for key in sorted(twins):
        el = elements.get(key)
        if el is None or el.is_pad or len(el.lanes) < 2:
            continue  # drum heads are round: their twins would cover every lane
        first = len(el.lanes) - CHAIN_LANES
        lanes = el.lanes[first:]
        x = el.x + (lanes[0] + lanes[-1]) / 2
        twin_els[key] = dataclasses.replace(
            el,
            name=f"{el.name}_twin",
            x=x,
            y=el.column_y + TWIN_Y,
            lanes=tuple(round(el.x + off - x, 9) for off in lanes),
            width=lanes[-1] - lanes[0] + 1.6 * r,  # 0.8 r either side: a marble on the next lane clears it
            first_lane=first,
        )
    return Layout(
        elements=elements, spacing=dx, x_min=-half, x_max=half, radius=r, twins=twin_els,
        arc_depth=depth, tiers=tiers,
    )  # fmt: skip


def _place(order, used, crowd, extra, twins, *, r: float):
    """The elements along one row from x = 0: (instrument, pitch, centre x, size, slab, lane offsets) each,
    and the row's width."""
    lane_gap = 2.2 * r
    x = 0.0
    placed: list[tuple[str, int, float, float, float, tuple[float, ...]]] = []
    for instrument in order:
        pitches = sorted(used[instrument])
        lo, hi = pitches[0], pitches[-1]
        for p in pitches:
            if instrument == "drums":
                count = max(DRUM_LANES, crowd[(instrument, p)] + 1) + extra.get((instrument, p), 0)
                slab = (count - 1) * lane_gap + 4 * r + HEAD_GAP * r  # every lane a radius inside the head
                size = slab - HEAD_GAP * r
            else:  # a bar is as wide as its lanes: the row stays as narrow as the camera needs it
                base = BAR_LANES + CHAIN_LANES if (instrument, p) in twins else BAR_LANES  # a twin's own lane
                count = max(base, crowd[(instrument, p)]) + extra.get((instrument, p), 0)
                slab = count * lane_gap
                size = 0.42 - 0.2 * (p - lo) / max(1, hi - lo)  # low notes get long bars
            lanes = tuple(round((k - (count - 1) / 2) * lane_gap, 9) for k in range(count))
            placed.append((instrument, p, x + slab / 2, size, slab, lanes))
            x += slab
        x += FAMILY_GAP * r  # gap between instruments
    return placed, x - FAMILY_GAP * r


def _cut(placed: list, tiers: int) -> list[list]:
    """The row cut into `tiers` runs of about equal width, each cut where one element ends (the one nearest
    to an equal share); one tier: the row as it is."""
    if tiers <= 1:
        return [placed]
    width = placed[-1][2] + placed[-1][4] / 2
    ends = [cx + slab / 2 for _, _, cx, _, slab, _ in placed]
    cuts, rows, start = [], [], 0
    for k in range(1, tiers):
        want = width * k / tiers
        i = min(range(start, len(placed) - (tiers - k)), key=lambda j: abs(ends[j] - want))
        cuts.append(i + 1)
        start = i + 1
    for a, b in zip([0, *cuts], [*cuts, len(placed)], strict=True):
        rows.append(placed[a:b])
    return rows


def arc_depth(width: float, radius: float, lens_mm: float) -> float:
    """How far the ends of a row `width` wide stand nearer the camera than its middle: the row bends
    into an arc facing the audience, deeper the more elements the song needs (ARC_PER_WIDTH of its
    width, within ARC_MAX), but never so deep that the ends, coming nearer, leave the view that holds
    the whole flat row at the camera's farthest distance (camera_rig.max_distance); a row too wide for
    that view (the camera sweeps along it) stays straight."""
    from blender_scripts import camera_rig  # it plans views of layouts: imported here, not at the top

    hw = camera_rig.half_width_per_metre(lens_mm) * ARC_FRAME
    d_row = camera_rig.max_distance(radius, lens_mm) - float(
        np.dot(camera_rig.VIEW_DIR, [0.0, -camera_rig.TARGET_Y, -camera_rig.TARGET_Z])
    )  # the flat row's depth in the view at that distance
    slack = (d_row - width / 2 / hw) / camera_rig.VIEW_DIR[1]  # how much nearer the ends may come
    return round(max(0.0, min(ARC_MAX, ARC_PER_WIDTH * width, slack)), 6)
