"""How each struck element moves: a damped oscillation that starts exactly at the contact.

A bar dips and vibrates (z), a drum head wobbles (z, faster, shorter), a cymbal swings (rotation about
x), a string shimmers sideways (x). Each reaction is sin(w (t - t_hit)) e^{-(t - t_hit)/tau}, so it is 0 at
the contact, scaled by velocity, and tapered (raised cosine) to exactly 0 one frame before the next hit
on the same element: the strike surface is always at rest when a marble touches it, so every later hit
stays exact. Curves are sampled once per frame plus an explicit 0 at each contact's sub-frame.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from blender_scripts.layout import CYMBALS, Element, drum_sound

RING_TAUS = 4.0


@dataclass(frozen=True)
class Motion:
    channel: str  # the object property it drives: delta_location or delta_rotation_euler
    axis: int
    amplitude: float  # metres or radians at velocity 127
    hz: float
    tau: float  # decay time constant (s)
    sign: float = -1.0  # bars and heads move down first, away from the marble


def motion(el: Element) -> Motion:
    if el.is_pad:
        if drum_sound(el.pitch) in CYMBALS:
            return Motion("delta_rotation_euler", 0, math.radians(7.0), 1.6, 0.9, 1.0)
        return Motion("delta_location", 2, 0.007, 9.0, 0.12)
    if el.instrument == "strings":
        return Motion("delta_location", 0, 0.003, 11.0, 0.5, 1.0)
    return Motion("delta_location", 2, 0.005, 6.0, 0.25)  # bars


def curve(
    hits: list[tuple[float, float]], mo: Motion, fps: int, offset: float, *, next_after: float | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """(frames, values) keying the reaction to `hits` (song time, velocity 0..1), frame = 1 + (t + offset)
    * fps. `next_after`: the hit that follows the last one (the loop's first hit one period later)."""
    merged: list[tuple[float, float]] = []
    for th, vel in sorted(hits):  # a unison strikes once, as loud as its loudest marble
        if merged and th - merged[-1][0] < 1e-6:
            merged[-1] = (merged[-1][0], max(merged[-1][1], vel))
        else:
            merged.append((th, vel))
    hits = merged
    frames: list[float] = []
    values: list[float] = []
    step = 1.0 / fps
    w = 2 * math.pi * mo.hz
    for k, (th, vel) in enumerate(hits):
        nxt = hits[k + 1][0] if k + 1 < len(hits) else next_after
        ring = RING_TAUS * mo.tau  # then the taper has taken it to 0: fewer keys on long songs
        end = th + ring if nxt is None else min(th + ring, nxt - step)
        f_hit = 1.0 + (th + offset) * fps
        frames.append(f_hit)
        values.append(0.0)  # at rest on the contact
        f0 = math.floor(f_hit) + 1
        f1 = math.floor(1.0 + (end + offset) * fps)
        if f1 <= f0:
            continue  # the next hit comes too soon to move in between
        f = np.arange(f0, f1 + 1, dtype=float)
        t = (f - 1.0) / fps - offset - th
        span = max(end - th, 1e-9)
        fade = np.clip((span - t) / (0.3 * span), 0.0, 1.0)
        taper = 0.5 - 0.5 * np.cos(np.pi * fade)  # 1, then to exactly 0 at `end`
        v = mo.sign * mo.amplitude * vel * np.sin(w * t) * np.exp(-t / mo.tau) * taper
        v[-1] = 0.0
        frames.extend(f.tolist())
        values.extend(v.tolist())
    return np.asarray(frames), np.asarray(values)
