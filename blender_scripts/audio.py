"""Synthesize the song per instrument with numpy and write it with the stdlib `wave` module.

Every note starts on the sample of its impact (round(t * rate)); mallets are decaying partials, drums are
shaped noise and pitch sweeps; each element is panned by its x position. Deterministic: the noise comes
from generators with fixed seeds. float32 and chunked output keep a long song's memory bounded.
"""

from __future__ import annotations

import functools
import os
import wave
from pathlib import Path

import numpy as np

from blender_scripts.layout import drum_sound
from blender_scripts.planner import Plan

RATE = 48000
CHUNK = 1 << 20
MALLET_PARTIALS = {  # (frequency ratio, amplitude, decay seconds)
    "marimba": ((1.0, 1.0, 0.9), (3.93, 0.35, 0.22), (9.2, 0.1, 0.06)),
    "vibraphone": ((1.0, 1.0, 2.2), (4.0, 0.25, 0.5)),
    "glockenspiel": ((1.0, 1.0, 1.4), (2.76, 0.4, 0.5), (5.4, 0.2, 0.2), (8.93, 0.1, 0.08)),
}


MALLET_SECONDS = {"marimba": 2.2, "vibraphone": 3.0, "glockenspiel": 2.5}


@functools.cache
def _mallet(instrument: str, pitch: int) -> np.ndarray:
    """One strike at velocity 127; mallet bars ring freely, so every strike of a bar sounds alike."""
    t = np.arange(int(MALLET_SECONDS[instrument] * RATE)) / RATE
    f0 = 440.0 * 2 ** ((pitch - 69) / 12)
    out = np.zeros_like(t)
    for ratio, amp, decay in MALLET_PARTIALS[instrument]:
        if f0 * ratio < RATE / 2.2:
            out += amp * np.sin(2 * np.pi * f0 * ratio * t) * np.exp(-t / decay)
    if instrument == "vibraphone":
        out *= 1 - 0.25 * (1 - np.cos(2 * np.pi * 5.5 * t))
    return out.astype(np.float32)


@functools.cache
def _drum(pitch: int, variant: int) -> np.ndarray:
    """A drum hit; four noise variants per sound (seeded, so deterministic) keep repeats from cloning."""
    rng = np.random.default_rng(pitch * 16 + variant)
    sound = drum_sound(pitch)
    length = {"crash": 1.6, "ride": 1.2, "china": 1.4, "splash": 0.8, "hihat_open": 0.45}.get(sound, 0.5)
    t = np.arange(int(length * RATE)) / RATE
    noise = rng.standard_normal(t.size)
    if sound == "kick":
        freq = 45 + 90 * np.exp(-t / 0.03)
        out = np.sin(2 * np.pi * np.cumsum(freq) / RATE) * np.exp(-t / 0.28)
    elif sound.startswith("tom"):
        base = {"tom_low": 90, "tom_mid": 130, "tom_high": 180}[sound]
        freq = base * (1 + 0.5 * np.exp(-t / 0.05))
        out = np.sin(2 * np.pi * np.cumsum(freq) / RATE) * np.exp(-t / 0.3)
    elif sound in ("snare", "clap", "stick"):
        tone = np.sin(2 * np.pi * 185 * t) * np.exp(-t / 0.08)
        out = 0.5 * tone + 0.6 * noise * np.exp(-t / 0.12)
    else:
        bright = np.diff(noise, prepend=0.0)  # first difference: a cheap high-pass for metal
        decay = {"hihat": 0.04, "hihat_pedal": 0.03, "hihat_open": 0.18}.get(sound, length / 3)
        out = 0.35 * bright * np.exp(-t / decay)
    return out.astype(np.float32)


def synthesize(plan: Plan, length_s: float) -> np.ndarray:
    """Stereo float32 buffer over song time [0, length_s); notes past the end are cut off."""
    total = int(round(length_s * RATE))
    out = np.zeros((total, 2), dtype=np.float32)
    for m in plan.marbles:
        start = int(round(m.t_impact * RATE))
        if start >= total:
            continue
        el = m.element
        sig = _drum(el.pitch, m.note.index % 4) if el.is_pad else _mallet(el.instrument, el.pitch)
        sig = sig[: total - start]
        gain = m.note.velocity / 127
        angle = (el.pan + 1) * np.pi / 4  # constant-power pan
        out[start : start + sig.size, 0] += sig * np.float32(gain * np.cos(angle))
        out[start : start + sig.size, 1] += sig * np.float32(gain * np.sin(angle))
    return out


def fold(buffer: np.ndarray, period_s: float) -> np.ndarray:
    """Wrap everything past the loop's end back onto its start (tails ring on into the next pass)."""
    n = int(round(period_s * RATE))
    out = np.zeros((n, 2), dtype=np.float32)
    for start in range(0, buffer.shape[0], n):
        chunk = buffer[start : start + n]
        out[: chunk.shape[0]] += chunk
    return out


def write_wav(path: Path, buffer: np.ndarray, peak: float, lead_in: int = 0) -> None:
    """16-bit stereo, `lead_in` silent frames first; `peak` is shared by the main and loop files so
    both play at one level. Converted in chunks to keep memory flat on long songs."""
    scale = np.float32(0.89 * 32767 / max(peak, 1e-9))
    tmp = path.with_name(f".{path.name}.tmp")
    with wave.open(str(tmp), "wb") as w:
        w.setnchannels(2)
        w.setsampwidth(2)
        w.setframerate(RATE)
        w.writeframes(bytes(4 * lead_in))
        for i in range(0, buffer.shape[0], CHUNK):
            chunk = np.clip(buffer[i : i + CHUNK] * scale, -32767, 32767)
            w.writeframes(chunk.round().astype("<i2").tobytes())
    os.replace(tmp, path)
