"""The song's audio: every note rendered by FluidSynth from a General MIDI SoundFont, mixed on its strike.

Each note is one FluidSynth one-shot (the note's own GM program -- or the drum kit on channel 10 --, pitch,
velocity and duration: note-on, its duration, note-off, then the release until the voice ends), mixed into
the song at sample round(strike time * RATE). A fresh synth state per one-shot and block-aligned rendering
make each one-shot start on its first sample, so every onset lands on the exact sample of its impact
(FluidSynth's own sequencer would only place events on 64-sample blocks). One-shots with the same key are
rendered once; the channel volume (CC7 x CC11) scales each note, and each element is panned by its x.

Why no numpy synthesizer any more: FluidSynth is a hard requirement of the content (Debian's
`libfluidsynth3` + `fluid-soundfont-gm`, installed by `make setup` and in the Blender image); without it the
build stops with one clear error instead of quietly writing a toy sound.
"""

from __future__ import annotations

import contextlib
import ctypes
import functools
import io
import os
import wave
from collections import defaultdict
from pathlib import Path

import numpy as np

from blender_scripts.errors import ContentError
from blender_scripts.planner import Plan

RATE = 48000
CHUNK = 1 << 20
BLOCK = 64  # FluidSynth renders in blocks of this many samples; events apply at a block start
MAX_TAIL_S = 4.0  # release tails are cut (with a short fade) after this long
FADE = 480  # 10 ms
TAIL_FLOOR = 10 ** (-90 / 20)
DRUM_CHANNEL = 9
SOUNDFONT_ENV = "RENDERLAB_SOUNDFONT"
SOUNDFONTS = (  # Debian's fluid-soundfont-gm, then whatever the system names as its default GM font
    "/usr/share/sounds/sf2/FluidR3_GM.sf2",
    "/usr/share/sounds/sf2/default-GM.sf2",
    "/usr/share/soundfonts/default.sf2",
)
INSTALL_HINT = "install Debian's libfluidsynth3 and fluid-soundfont-gm (`make setup` does)"


def soundfont() -> Path:
    env = os.environ.get(SOUNDFONT_ENV)
    if env:
        if not Path(env).is_file():
            raise ContentError(f"{SOUNDFONT_ENV}={env} is not a file; point it at a General MIDI .sf2")
        return Path(env)
    for path in map(Path, SOUNDFONTS):
        if path.is_file():
            return path
    raise ContentError(f"no General MIDI SoundFont found (looked at {', '.join(SOUNDFONTS)}); {INSTALL_HINT}")


class _Synth:
    """One FluidSynth instance (no reverb, no chorus: one-shots must not bleed into each other)."""

    def __init__(self, sf2: Path):
        try:
            # pyfluidsynth prints where it found the library to stdout when $CI is set; stdout is the
            # CLI's result channel (one JSON line), so that note is dropped.
            with contextlib.redirect_stdout(io.StringIO()):
                import fluidsynth
        except ImportError as exc:  # pyfluidsynth raises ImportError when libfluidsynth is missing
            raise ContentError(f"FluidSynth cannot be loaded ({exc}); {INSTALL_HINT}") from exc
        settings = {"synth.reverb.active": 0, "synth.chorus.active": 0, "synth.cpu-cores": 1}
        self.fs = fluidsynth.Synth(gain=0.4, samplerate=float(RATE), **settings)
        self.sfid = self.fs.sfload(str(sf2))
        if self.sfid < 0:
            raise ContentError(f"FluidSynth cannot load the SoundFont {sf2}; {INSTALL_HINT}")
        self._write = fluidsynth.cfunc(
            "fluid_synth_write_float", ctypes.c_int,
            ("synth", ctypes.c_void_p, 1), ("len", ctypes.c_int, 1),
            ("lout", ctypes.c_void_p, 1), ("loff", ctypes.c_int, 1), ("lincr", ctypes.c_int, 1),
            ("rout", ctypes.c_void_p, 1), ("roff", ctypes.c_int, 1), ("rincr", ctypes.c_int, 1),
        )  # fmt: skip
        self.one_shot(False, 0, 60, 64, 1)  # the very first voice of a new synth starts slightly apart

    def _render(self, n: int) -> np.ndarray:
        buf = np.zeros((n, 2), dtype=np.float32)
        ptr = buf.ctypes.data
        self._write(self.fs.synth, n, ptr, 0, 2, ptr, 1, 2)
        return buf

    def one_shot(self, drum: bool, program: int, pitch: int, velocity: int, blocks: int) -> np.ndarray:
        """note-on, `blocks` blocks held, note-off, release until silent (or MAX_TAIL_S)."""
        fs = self.fs
        for ch in (0, DRUM_CHANNEL):
            fs.all_sounds_off(ch)
        # A voice cut at MAX_TAIL_S ends during the next block; reset before that and the next one-shot
        # on its voice sounds a little different (measured on a crash cymbal: up to -35 dB of its peak).
        self._render(BLOCK)
        fs.system_reset()  # every one-shot starts from silence and default controllers
        channel = DRUM_CHANNEL if drum else 0
        fs.program_select(channel, self.sfid, 128 if drum else 0, 0 if drum else program)
        for _ in range(RATE // BLOCK):  # flush: events take effect at a block start; cut voices end
            self._render(BLOCK)
            if fs.get_active_voice_count() == 0:
                break
        fs.noteon(channel, pitch, velocity)
        parts = [self._render(blocks * BLOCK)]
        fs.noteoff(channel, pitch)
        step = 40 * BLOCK  # divides MAX_TAIL_S * RATE; a voice ending mid-step only adds silence (trimmed)
        for _ in range(int(MAX_TAIL_S * RATE) // step):
            parts.append(self._render(step))
            if fs.get_active_voice_count() == 0:
                break
        else:
            parts[-1][-FADE:] *= np.linspace(1.0, 0.0, min(FADE, len(parts[-1])), dtype=np.float32)[:, None]
        out = np.concatenate(parts)
        level = np.abs(out.reshape(-1))  # both channels, interleaved (a reduce over axis 1 is slow)
        loud = np.flatnonzero(
            level > TAIL_FLOOR * max(float(level.max()), 1e-9)
        )  # the tail under -90 dB goes
        return out[: (loud[-1] // 2 + 1) if loud.size else 1]


@functools.cache
def _synth() -> _Synth:
    return _Synth(soundfont())


def release() -> None:
    """Free the synth and its loaded SoundFont (the next note renders with a fresh one)."""
    if _synth.cache_info().currsize:
        _synth().fs.delete()
        _synth.cache_clear()


def held_blocks(duration: float) -> int:
    """A note's held time in whole blocks, >= 1 (rounded on a 2 % grid so repeats share one-shots)."""
    blocks = max(1.0, duration * RATE / BLOCK)
    return max(1, round(1.02 ** round(np.log(blocks) / np.log(1.02))))


def note_key(hit, program: int) -> tuple[bool, int, int, int, int]:
    """What one one-shot depends on: drum kit or GM program, pitch, velocity, held blocks."""
    n = hit.note
    drum = n.is_percussion
    return (drum, 0 if drum else program, n.pitch, n.velocity, held_blocks(n.duration))


def onset(t: float) -> int:
    """The sample a sound struck at song time t starts on."""
    return int(round(t * RATE))


def pan_gain(hit) -> np.ndarray:
    """Left/right gain of a struck note: channel volume, constant-power pan by the element's place."""
    angle = (hit.element.pan + 1) * np.pi / 4
    return np.float32(hit.note.volume * np.sqrt(2)) * np.array([np.cos(angle), np.sin(angle)], np.float32)


def synthesize(
    plan: Plan, length_s: float, programs: dict[int, int] | None = None, keep: dict | None = None
) -> np.ndarray:
    """Stereo float32 buffer over song time [0, length_s); sound past the end is cut off.
    `programs`: note index -> GM program (default: the note's own); `keep` collects the one-shots."""
    total = int(round(length_s * RATE))
    out = np.zeros((total, 2), dtype=np.float32)
    groups = defaultdict(list)
    for _, h in plan.hits():
        groups[note_key(h, (programs or {}).get(h.note.index, h.note.program))].append(h)
    synth = _synth() if groups else None
    for key in sorted(groups):  # one one-shot alive at a time: memory stays flat
        shot = synth.one_shot(*key)
        if keep is not None:
            keep[key] = shot
        for h in groups[key]:
            start = onset(h.t)
            if start >= total:
                continue
            sig = shot[: total - start]
            out[start : start + sig.shape[0]] += sig * pan_gain(h)
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
