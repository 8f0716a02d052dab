"""The FluidSynth audio: every note's one-shot starts on the exact sample of its strike (no bpy)."""

from __future__ import annotations

import mido
import numpy as np
import pytest

from blender_scripts import arrangement, audio, layout, planner, song

from .helpers import DEPOT, write_midi


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


def test_demo_song_mixes_every_note(tmp_path):
    tune, plan = _plan(DEPOT / "frere_groove" / "song.mid")
    programs = {n.index: n.program for n in tune.notes}
    shots = {}
    buf = audio.synthesize(plan, 6.0, programs, shots)
    assert np.abs(buf).max() > 0.01
    assert len(shots) < len(plan.marbles)  # repeats share one one-shot
    assert _residual(buf, plan, programs, shots)(0) < 1e-5
