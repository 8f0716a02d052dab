"""Synthesize the song per instrument with numpy and write it with the stdlib `wave` module.

Every note starts on the sample of its impact (round(t * rate)); mallets are decaying partials, drums are
shaped noise and pitch sweeps; each element is panned by its x position. Deterministic: the noise comes
from a generator seeded by the note's index.
"""

from __future__ import annotations

import os
import wave
from pathlib import Path

import numpy as np

from blender_scripts.layout import drum_sound
from blender_scripts.planner import Plan

RATE = 48000
MALLET_PARTIALS = {  # (frequency ratio, amplitude, decay seconds)
    "marimba": ((1.0, 1.0, 0.9), (3.93, 0.35, 0.22), (9.2, 0.1, 0.06)),
    "vibraphone": ((1.0, 1.0, 2.2), (4.0, 0.25, 0.5)),
    "glockenspiel": ((1.0, 1.0, 1.4), (2.76, 0.4, 0.5), (5.4, 0.2, 0.2), (8.93, 0.1, 0.08)),
}


def _mallet(instrument: str, pitch: int, seconds: float) -> np.ndarray:
    t = np.arange(int(seconds * RATE)) / RATE
    f0 = 440.0 * 2 ** ((pitch - 69) / 12)
    out = np.zeros_like(t)
    for ratio, amp, decay in MALLET_PARTIALS[instrument]:
        if f0 * ratio < RATE / 2.2:
            out += amp * np.sin(2 * np.pi * f0 * ratio * t) * np.exp(-t / decay)
    if instrument == "vibraphone":
        out *= 1 - 0.25 * (1 - np.cos(2 * np.pi * 5.5 * t))
    return out


def _drum(pitch: int, rng: np.random.Generator) -> np.ndarray:
    sound = drum_sound(pitch)
    length = {"crash": 1.6, "ride": 1.2, "china": 1.4, "splash": 0.8, "hihat_open": 0.45}.get(sound, 0.5)
    t = np.arange(int(length * RATE)) / RATE
    noise = rng.standard_normal(t.size)
    if sound == "kick":
        freq = 45 + 90 * np.exp(-t / 0.03)
        return np.sin(2 * np.pi * np.cumsum(freq) / RATE) * np.exp(-t / 0.28)
    if sound.startswith("tom"):
        base = {"tom_low": 90, "tom_mid": 130, "tom_high": 180}[sound]
        freq = base * (1 + 0.5 * np.exp(-t / 0.05))
        return np.sin(2 * np.pi * np.cumsum(freq) / RATE) * np.exp(-t / 0.3)
    if sound in ("snare", "clap", "stick"):
        tone = np.sin(2 * np.pi * 185 * t) * np.exp(-t / 0.08)
        return 0.5 * tone + 0.6 * noise * np.exp(-t / 0.12)
    bright = np.diff(noise, prepend=0.0)  # first difference: a cheap high-pass for metal
    decay = {"hihat": 0.04, "hihat_pedal": 0.03, "hihat_open": 0.18}.get(sound, length / 3)
    return 0.35 * bright * np.exp(-t / decay)


def synthesize(plan: Plan, length_s: float) -> np.ndarray:
    """Stereo float buffer over song time [0, length_s); notes past the end are cut off."""
    total = int(round(length_s * RATE))
    out = np.zeros((total, 2))
    for m in plan.marbles:
        start = int(round(m.t_impact * RATE))
        if start >= total:
            continue
        el = m.element
        if el.is_pad:
            sig = _drum(el.pitch, np.random.default_rng(m.note.index))
        else:
            sig = _mallet(el.instrument, el.pitch, min(3.0, max(1.0, m.note.duration + 0.8)))
        sig = sig[: total - start] * (m.note.velocity / 127)
        angle = (el.pan + 1) * np.pi / 4  # constant-power pan
        out[start : start + sig.size, 0] += sig * np.cos(angle)
        out[start : start + sig.size, 1] += sig * np.sin(angle)
    return out


def fold(buffer: np.ndarray, period_s: float) -> np.ndarray:
    """Wrap everything past the loop's end back onto its start (tails ring on into the next pass)."""
    n = int(round(period_s * RATE))
    out = np.zeros((n, 2))
    for start in range(0, buffer.shape[0], n):
        chunk = buffer[start : start + n]
        out[: chunk.shape[0]] += chunk
    return out


def write_wav(path: Path, buffer: np.ndarray, peak: float) -> None:
    """16-bit stereo; `peak` is shared by the main and loop files so both play at one level."""
    pcm = np.clip(buffer / max(peak, 1e-9) * 0.89, -1, 1)
    data = (pcm * 32767).round().astype("<i2").tobytes()
    tmp = path.with_name(f".{path.name}.tmp")
    with wave.open(str(tmp), "wb") as w:
        w.setnchannels(2)
        w.setsampwidth(2)
        w.setframerate(RATE)
        w.writeframes(data)
    os.replace(tmp, path)
