"""Where every struck element stands: one bar per pitch per mallet instrument, one pad per drum sound.

Elements stand in one row along x; each has its own vertical "column" (a slab of x) that only its own
marbles ever enter, split into lanes at least 2.2 marble radii apart. That is what lets the planner
check collisions lane by lane and what keeps marbles away from elements they are not meant to strike.
"""

from __future__ import annotations

from dataclasses import dataclass

from blender_scripts.arrangement import MALLETS, Arrangement
from blender_scripts.song import Song

NAMES = ("C", "C#", "D", "D#", "E", "F", "F#", "G", "G#", "A", "A#", "B")
GM_DRUMS = {
    35: "kick", 36: "kick", 37: "stick", 38: "snare", 39: "clap", 40: "snare", 41: "tom_low", 42: "hihat",
    43: "tom_low", 44: "hihat_pedal", 45: "tom_mid", 46: "hihat_open", 47: "tom_mid", 48: "tom_high",
    49: "crash", 50: "tom_high", 51: "ride", 52: "china", 53: "ride_bell", 54: "tambourine", 55: "splash",
    56: "cowbell", 57: "crash", 59: "ride",
}  # fmt: skip
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

    @property
    def is_pad(self) -> bool:
        return self.instrument == "drums"

    @property
    def y_far(self) -> float:
        """+y edge of the strike surface: a bouncing marble must be past it before it drops again."""
        return self.length / 2


@dataclass(frozen=True)
class Layout:
    elements: dict[tuple[str, int], Element]
    spacing: float
    x_min: float
    x_max: float


def build(song: Song, arrangement: Arrangement) -> Layout:
    r = arrangement.marble_radius
    dx = max(0.1, 5.0 * r)
    used: dict[str, set[int]] = {}
    for n in song.notes:
        used.setdefault(arrangement.instrument_for(song, n.track, n.is_percussion), set()).add(n.pitch)
    order = [i for i in (*MALLETS, "drums") if i in used]
    x = 0.0
    placed: list[tuple[str, int, float, float, float, tuple[float, ...]]] = []
    for instrument in order:
        pitches = sorted(used[instrument])
        lo, hi = pitches[0], pitches[-1]
        for p in pitches:
            if instrument == "drums":
                width = 2 * dx
                size = 2 * dx - 0.02
                lanes = (-2.2 * r, 0.0, 2.2 * r)
            else:
                width = dx
                size = 0.42 - 0.2 * (p - lo) / max(1, hi - lo)  # low notes get long bars
                lanes = (-1.1 * r, 1.1 * r)
            placed.append((instrument, p, x + width / 2, size, width, lanes))
            x += width
        x += dx  # gap between instruments
    x_max = x - dx
    center = x_max / 2
    elements = {}
    for instrument, p, cx, size, width, lanes in placed:
        label = drum_sound(p) if instrument == "drums" else note_name(p)
        elements[(instrument, p)] = Element(
            name=f"{instrument}_{p:03d}_{label}",
            instrument=instrument,
            pitch=p,
            x=center - cx,  # the camera looks from +y, so low notes (placed first) end up on screen left
            top_z=0.0,
            length=size,
            width=(size if instrument == "drums" else width * 0.8),
            lanes=lanes,
            pan=max(-0.8, min(0.8, (cx - center) / max(center, 1e-6) * 0.8)),  # low left, high right
        )
    return Layout(elements=elements, spacing=dx, x_min=center - x_max, x_max=center)
