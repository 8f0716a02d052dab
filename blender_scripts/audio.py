"""The song's audio: every note rendered by FluidSynth from a General MIDI SoundFont, mixed on its strike.

Each note is one FluidSynth one-shot (the note's own GM program -- or the drum kit on channel 10 --, pitch,
velocity and duration: note-on, its duration, note-off, then the release until the voice ends), mixed into
the song at sample round(strike time * RATE). A fresh synth state per one-shot and block-aligned rendering
make each one-shot start on its first sample, so every onset lands on the exact sample of its impact
(FluidSynth's own sequencer would only place events on 64-sample blocks). One-shots with the same key are
rendered once; the channel volume (CC7 x CC11) scales each note, and each element is panned by its x.

A build renders the one-shots in SHARES processes while it builds the scenes (`SongAudio`): each process
mixes an interleaved share of the sorted one-shot keys into its own float32 file, the last step sums the
shares in a fixed order and writes the WAVs. The share count is fixed, not the core count, so the WAV's bits do
not depend on the machine.

Why no numpy synthesizer any more: FluidSynth is a hard requirement of the content (Debian's
`libfluidsynth3` + `fluid-soundfont-gm`, installed by `make setup` and in the Blender image); without it the
build stops with one clear error instead of quietly writing a toy sound.
"""

from __future__ import annotations

import contextlib
import ctypes
import functools
import io
import multiprocessing
import os
import pickle
import signal
import threading
import wave
from collections import defaultdict
from pathlib import Path
from typing import NamedTuple

import numpy as np

from blender_scripts.errors import ContentError
from blender_scripts.planner import Plan
from renderlab.base import atomic

RATE = 48000
CHUNK = 1 << 20
BLOCK = 64  # FluidSynth renders in blocks of this many samples; events apply at a block start
MAX_TAIL_S = 4.0  # release tails are cut (with a short fade) after this long
FADE = 480  # 10 ms
TAIL_FLOOR = 10 ** (-90 / 20)
DRUM_CHANNEL = 9
PR_SET_PDEATHSIG = 1  # prctl(2)
SHARES = 2  # one-shot renders run in this many processes (fixed: the sum order, so the bits, stay put)
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
        with open(env, "rb") as f:  # checked here: FluidSynth would only fail later, in a worker, verbosely
            head = f.read(12)
        if head[:4] != b"RIFF" or head[8:] not in (b"sfbk", b"DLS "):
            raise ContentError(f"{SOUNDFONT_ENV}={env} is not a SoundFont (no RIFF sfbk header); "
                               "point it at a General MIDI .sf2")  # fmt: skip
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


def _groups(plan: Plan, programs: dict[int, int] | None) -> dict[tuple, list[tuple[int, np.ndarray]]]:
    """One-shot key -> [(onset sample, left/right gain)] of every hit that plays it."""
    groups = defaultdict(list)
    for _, h in plan.hits():
        key = note_key(h, (programs or {}).get(h.note.index, h.note.program))
        groups[key].append((onset(h.t), pan_gain(h)))
    return groups


def _mix(groups: dict, out: np.ndarray, keep: dict | None = None) -> None:
    """Render each key's one-shot (sorted key order: one one-shot alive at a time, memory stays flat)
    and add it at each of its onsets; sound past the buffer's end is cut off."""
    total = out.shape[0]
    synth = _synth() if groups else None
    for key in sorted(groups):
        shot = synth.one_shot(*key)
        if keep is not None:
            keep[key] = shot
        for start, gain in groups[key]:
            if start >= total:
                continue
            sig = shot[: total - start]
            out[start : start + sig.shape[0]] += sig * gain


def synthesize(
    plan: Plan, length_s: float, programs: dict[int, int] | None = None, keep: dict | None = None
) -> np.ndarray:
    """Stereo float32 buffer over song time [0, length_s), in this process (a build uses SongAudio).
    `programs`: note index -> GM program (default: the note's own); `keep` collects the one-shots."""
    out = np.zeros((int(round(length_s * RATE)), 2), dtype=np.float32)
    _mix(_groups(plan, programs), out, keep)
    return out


def _share_file(path: str, total: int, mode: str) -> np.memmap:
    return np.memmap(path, dtype=np.float32, mode=mode, shape=(total, 2))


def _render_share(job: str, total: int, path: str) -> None:
    """A worker: mix the one-shots listed in `job` into a float32 file of the whole song."""
    groups = pickle.loads(Path(job).read_bytes())
    os.unlink(job)
    with open(path, "wb") as f:  # its blocks taken now: a full disk is ENOSPC here, not SIGBUS mid-mix
        os.posix_fallocate(f.fileno(), 0, total * 2 * 4)
    out = _share_file(path, total, "r+")  # allocated blocks read as zeros
    _mix(groups, out)
    out.flush()
    del out
    release()


class _SongFiles(NamedTuple):
    main_samples: int  # the song WAV's length after its lead-in
    lead_in: int  # silent frames before the first sample of song time
    period_s: float  # the loop's length: what lies past it is folded back onto its start
    wav: str
    loop_wav: str


def _write_song(shares: list[str], total: int, files: _SongFiles, go) -> None:
    """A worker: once `go` says the shares are done, sum them (in share order), write the song's WAV and
    its loop's. `go` closed without a word: the shares failed or were cancelled, nothing to write."""
    try:
        go.recv()
    except EOFError:
        return
    main_samples, lead_in, period_s, wav, loop_wav = files
    full = _share_file(shares[0], total, "r+")
    for other in shares[1:]:
        part = _share_file(other, total, "r")
        for i in range(0, total, CHUNK):
            full[i : i + CHUNK] += part[i : i + CHUNK]
        del part
        os.unlink(other)
    main = full[:main_samples]
    loop = fold(full, period_s)
    peak = max(_peak(main), _peak(loop))
    write_wav(Path(wav), main, peak, lead_in=lead_in)
    write_wav(Path(loop_wav), loop, peak)
    del full, main
    os.unlink(shares[0])


def _peak(buf: np.ndarray) -> float:
    return max((float(np.abs(buf[i : i + CHUNK]).max()) for i in range(0, buf.shape[0], CHUNK)), default=0.0)


def _die_with_parent(parent: int) -> None:
    """Linux: the kernel kills this worker when the build that started it dies (even by SIGKILL)."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    if os.getppid() != parent:  # it died before the line above ran
        os._exit(1)


def _worker(target, args: tuple, conn, parent: int) -> None:
    """A worker process's body: run `target`, send back None or the exception it raised."""
    _die_with_parent(parent)
    try:
        target(*args)
        conn.send(None)
    except BaseException as e:  # ContentError/OSError pickle; anything else is sent as its text
        try:
            conn.send(e)
        except Exception:
            conn.send(RuntimeError(f"{type(e).__name__}: {e}"))


def start_worker(ctx, target, *args):
    """Start `target(*args)` in a `ctx` process that dies with this one; returns it and the pipe end on
    which it reports."""
    recv, send = ctx.Pipe(duplex=False)
    proc = ctx.Process(target=_worker, args=(target, args, send, os.getpid()), daemon=True)
    proc.start()
    send.close()
    return proc, recv


class SongAudio:
    """The song's WAV and loop WAV, rendered by worker processes while the caller goes on.
    `wait()` returns once both files are written (or raises what a worker raised); `cancel()` stops it."""

    def __init__(self, plan: Plan, programs: dict[int, int], *, length_s: float, main_samples: int,
                 lead_in: int, period_s: float, wav: Path, loop_wav: Path):  # fmt: skip
        soundfont()  # a missing SoundFont is one clear error here, before any process starts
        self.wav, self.loop_wav = wav, loop_wav
        total = int(round(length_s * RATE))
        groups = _groups(plan, programs)
        keys = sorted(groups)
        shares = [str(wav.parent / f".{wav.stem}.share{i}.f32") for i in range(SHARES)]
        # spawn, not fork: a fork would copy the caller's threads' held locks (a DAG task, a test runner)
        self._ctx = multiprocessing.get_context("spawn")
        self._procs: list = []
        self._lock = threading.Lock()
        self._cancelled = False
        self._error: BaseException | None = None
        files = _SongFiles(main_samples, lead_in, period_s, str(wav), str(loop_wav))
        # Every worker starts here, in the caller's thread, before it goes on to import Blender: an import
        # in a second thread during bpy's own import deadlocks, and while bpy imports, __main__ is not this
        # program (a spawn then would re-run "<blender string>"). The share keys go through files, since a
        # spawn blocks until its child has read its arguments; the writer waits for a word on `go`.
        running = []
        for i, path in enumerate(shares):
            job = Path(f"{path}.job")
            job.write_bytes(pickle.dumps({k: groups[k] for k in keys[i::SHARES]}, pickle.HIGHEST_PROTOCOL))
            running.append(self._spawn(_render_share, str(job), total, path))
        go_recv, go_send = self._ctx.Pipe(duplex=False)
        writer = self._spawn(_write_song, shares, total, files, go_recv)
        go_recv.close()

        def finish() -> None:
            try:
                for proc in running:
                    self._join(*proc)
                with contextlib.suppress(OSError):  # a writer that died says so through its own pipe
                    go_send.send(True)
                self._join(*writer)
            except BaseException as e:  # handed to wait()
                self._error = e
            finally:
                go_send.close()  # a writer still waiting reads EOF and ends

        self._thread = threading.Thread(target=finish, name="song-audio", daemon=True)
        self._thread.start()

    def _spawn(self, target, *args):
        with self._lock:  # no worker starts once cancel() has run
            if self._cancelled:
                raise ContentError("the song's audio was cancelled")
            proc, recv = start_worker(self._ctx, target, *args)
            self._procs.append(proc)
        return proc, recv

    @staticmethod
    def _join(proc, recv) -> None:
        try:
            error = recv.recv()
        except EOFError:  # it died without a word (killed, out of memory)
            proc.join()
            error = ContentError(f"an audio worker ended with exit status {proc.exitcode} and no result")
        proc.join()
        if error is not None:
            raise error

    def wait(self) -> None:
        self._thread.join()
        if self._error is not None:
            raise self._error

    def cancel(self) -> None:
        with self._lock:
            self._cancelled = True
        for proc in self._procs:
            proc.kill()
            proc.join()
        self._thread.join(timeout=5)


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
    with atomic.target(path, mode=0o644) as tmp, wave.open(str(tmp), "wb") as w:
        w.setnchannels(2)
        w.setsampwidth(2)
        w.setframerate(RATE)
        w.writeframes(bytes(4 * lead_in))
        for i in range(0, buffer.shape[0], CHUNK):
            chunk = np.clip(buffer[i : i + CHUNK] * scale, -32767, 32767)
            w.writeframes(chunk.round().astype("<i2").tobytes())
