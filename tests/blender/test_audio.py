"""The FluidSynth audio: every note's one-shot starts on the exact sample of its strike (no bpy)."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import wave
from pathlib import Path

import mido
import numpy as np
import pytest

from blender_scripts import arrangement, audio, layout, planner, song

from .helpers import DEPOT, ROOT, run_cli, write_midi


def _plan(path, arr=None):
    tune = song.load(path)
    arr = arr or arrangement.Arrangement()
    stage = layout.build(tune, arr)
    return tune, planner.plan(tune, arr, stage, 60, song.loop_length(tune))


def _residual(buf, plan, programs, shots):
    """The buffer minus every note's one-shot placed at `shift` samples from its strike sample."""

    def at(shift):
        rest = buf.copy()
        for _, h in plan.hits():
            key = audio.note_key(h, programs[h.note.index])
            shot = shots[key]
            start = audio.onset(h.t) + shift
            if start >= rest.shape[0]:
                continue
            sig = shot[: rest.shape[0] - start]
            rest[start : start + sig.shape[0]] -= sig * audio.pan_gain(h)
        return float(np.abs(rest).max())

    return at


def test_every_onset_is_on_the_sample_of_its_strike(tmp_path):
    """Overlapping notes at odd times (not on 64-sample blocks): removing each note's one-shot at exactly
    its strike sample leaves silence; one sample early or late leaves the song audible."""
    path = write_midi(tmp_path / "odd.mid", [[(0.0123, 60, 0.4), (0.3377, 64, 1.2), (0.341, 67, 0.2)],
                                             [(0.7001, 48, 2.0), (1.4101, 48, 0.3)]], bpm=97)  # fmt: skip
    tune = song.load(path)
    _, plan = planner.place(tune, arrangement.Arrangement(), 60, song.loop_length(tune))
    assert any(len(m.hits) == 2 for m in plan.marbles)  # the repeated C3 is one marble: bar, then twin
    assert {audio.onset(h.t) % audio.BLOCK for _, h in plan.hits()} != {0}
    programs = {n.index: n.program for n in tune.notes}
    shots = {}
    buf = audio.synthesize(plan, tune.end_time + 3.0, programs, shots)
    peak = float(np.abs(buf).max())
    residual = _residual(buf, plan, programs, shots)
    assert residual(0) < 1e-6 * peak
    assert residual(-1) > 1e-3 * peak and residual(1) > 1e-3 * peak
    first = audio.onset(plan.hits()[0][1].t)
    assert not buf[:first].any() and buf[first : first + audio.BLOCK].any()


def test_one_shot_is_the_notes_own_program_drum_kit_and_velocity():
    synth = audio._synth()
    piano = synth.one_shot(False, 0, 60, 100, 40)
    marimba = synth.one_shot(False, 12, 60, 100, 40)
    soft = synth.one_shot(False, 12, 60, 30, 40)
    snare = synth.one_shot(True, 0, 38, 100, 40)
    assert piano.shape != marimba.shape or not np.allclose(piano, marimba)
    assert np.abs(soft).max() < 0.6 * np.abs(marimba).max()
    assert snare.shape[0] < piano.shape[0]  # a snare dies away, a piano rings
    assert np.abs(piano[: audio.BLOCK]).max() > 0  # sound from the first block on


def test_programs_come_from_the_song_unless_the_arrangement_names_the_instrument(tmp_path):
    mid = mido.MidiFile(type=1, ticks_per_beat=480)
    track = mido.MidiTrack([
        mido.Message("program_change", channel=0, program=40, time=0),
        mido.Message("control_change", channel=0, control=7, value=64, time=0),
        mido.Message("note_on", channel=0, note=60, velocity=90, time=0),
        mido.Message("note_off", channel=0, note=60, time=480),
        mido.Message("program_change", channel=0, program=24, time=0),
        mido.Message("note_on", channel=0, note=62, velocity=90, time=0),
        mido.Message("note_off", channel=0, note=62, time=480),
    ])  # fmt: skip
    mid.tracks.append(track)
    mid.save(str(tmp_path / "p.mid"))
    tune = song.load(tmp_path / "p.mid")
    assert [n.program for n in tune.notes] == [40, 24]
    assert tune.notes[0].volume == pytest.approx(64 / 127)
    arr = arrangement.Arrangement(tracks={"0": "vibraphone"})
    assert arr.program_for(tune, 0, 40) == 11
    assert arrangement.Arrangement().program_for(tune, 0, 40) == 40


def test_missing_soundfont_is_one_clear_error(monkeypatch, tmp_path):
    from blender_scripts.errors import ContentError

    monkeypatch.setenv(audio.SOUNDFONT_ENV, str(tmp_path / "none.sf2"))
    with pytest.raises(ContentError, match="is not a file; point it at a General MIDI .sf2"):
        audio.soundfont()
    (tmp_path / "notes.sf2").write_text("not a SoundFont")
    monkeypatch.setenv(audio.SOUNDFONT_ENV, str(tmp_path / "notes.sf2"))
    proc = run_cli("build", "--midi", DEPOT / "ode_waltz" / "song.mid", "--out", tmp_path / "out")
    assert proc.returncode == 2 and not (tmp_path / "out").exists()
    errors = [line for line in proc.stderr.splitlines() if "error" in line.lower()]
    assert errors == [f"build: error: {audio.SOUNDFONT_ENV}={tmp_path / 'notes.sf2'} is not a SoundFont "
                      "(no RIFF sfbk header); point it at a General MIDI .sf2"]  # fmt: skip


def test_demo_song_mixes_every_note(tmp_path):
    tune, plan = _plan(DEPOT / "frere_groove" / "song.mid")
    programs = {n.index: n.program for n in tune.notes}
    shots = {}
    buf = audio.synthesize(plan, 6.0, programs, shots)
    assert np.abs(buf).max() > 0.01
    assert len(shots) < len(plan.marbles)  # repeats share one one-shot
    assert _residual(buf, plan, programs, shots)(0) < 1e-5


def _wav(path):
    with wave.open(str(path), "rb") as w:
        return np.frombuffer(w.readframes(w.getnframes()), "<i2").reshape(-1, 2).astype(np.int32)


def _song_audio(plan, programs, folder, length_s=8.0, main_samples=None):
    folder.mkdir(exist_ok=True)
    return audio.SongAudio(
        plan,
        programs,
        length_s=length_s,
        main_samples=main_samples or int(length_s * audio.RATE) - audio.RATE,
        lead_in=1000,
        period_s=plan.period,
        wav=folder / "s.wav",
        loop_wav=folder / "s_loop.wav",
    )


def test_worker_processes_write_the_same_song_as_one_process(tmp_path):
    """The build's audio (one-shot shares mixed in worker processes, summed, folded) is the serial mix:
    a float32 sum in another order moves a sample by a few 16-bit steps at most, and only a few samples."""
    tune, plan = _plan(DEPOT / "frere_groove" / "song.mid")
    programs = {n.index: n.program for n in tune.notes}
    length = plan.period + 4.0
    main_samples = int(plan.period * audio.RATE)
    work = _song_audio(plan, programs, tmp_path / "w", length, main_samples)
    work.wait()
    full = audio.synthesize(plan, length, programs)
    main, loop = full[:main_samples], audio.fold(full, plan.period)
    peak = max(float(np.abs(main).max()), float(np.abs(loop).max()))
    audio.write_wav(tmp_path / "main.wav", main, peak, lead_in=1000)
    audio.write_wav(tmp_path / "loop.wav", loop, peak)
    for ours, serial in ((tmp_path / "w" / "s.wav", tmp_path / "main.wav"),
                         (tmp_path / "w" / "s_loop.wav", tmp_path / "loop.wav")):  # fmt: skip
        a, b = _wav(ours), _wav(serial)
        assert a.shape == b.shape and np.abs(b).max() > 10000
        diff = np.abs(a - b)
        assert diff.max() <= 4 and np.count_nonzero(diff) < 0.01 * diff.size
    assert not _wav(tmp_path / "w" / "s.wav")[:1000].any()  # the lead-in is silence
    assert sorted(os.listdir(tmp_path / "w")) == ["s.wav", "s_loop.wav"]  # no share or job file left


def test_a_worker_that_dies_is_one_clear_error_and_cancel_stops_the_rest(tmp_path):
    from blender_scripts.errors import ContentError

    tune, plan = _plan(DEPOT / "ode_waltz" / "song.mid")
    programs = {n.index: n.program for n in tune.notes}
    work = _song_audio(plan, programs, tmp_path / "w", plan.period + 4.0)
    work._procs[0].kill()  # as the kernel's OOM killer would
    with pytest.raises(ContentError, match=r"an audio worker ended with exit status -9 and no result"):
        work.wait()
    work.cancel()
    assert not any(p.is_alive() for p in work._procs)

    work = _song_audio(plan, programs, tmp_path / "c", plan.period + 4.0)
    # Every worker, the writer too, has started when the constructor returns: the build imports Blender
    # next, and a process spawned while bpy imports would re-run bpy's "<blender string>" as its __main__.
    assert len(work._procs) == audio.SHARES + 1
    work.cancel()  # the build failed elsewhere
    assert not any(p.is_alive() for p in work._procs)
    with pytest.raises(ContentError):
        work.wait()


def test_workers_die_with_a_killed_build():
    """SIGKILL on the build (nothing of it runs to clean up): the kernel ends its audio workers too."""
    script = f"""
import multiprocessing, sys, time
sys.path.insert(0, {str(ROOT)!r})
from blender_scripts import audio
if __name__ == "__main__":
    procs = [audio.start_worker(multiprocessing.get_context("spawn"), time.sleep, 120)[0] for _ in range(2)]
    time.sleep(1)  # both are past their start
    print(" ".join(str(p.pid) for p in procs), flush=True)
    time.sleep(120)
"""
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    pids = [int(p) for p in proc.stdout.readline().split()]
    assert len(pids) == 2 and all(_alive(p) for p in pids)
    proc.kill()
    proc.wait()
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and any(_alive(p) for p in pids):
        time.sleep(0.05)
    assert not any(_alive(p) for p in pids)


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return False
    return state != "Z"  # a zombie has ended; only its exit status waits for its reaper
