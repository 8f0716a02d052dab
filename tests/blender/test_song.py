"""MIDI parsing, arrangement validation and the planner: pure Python, no bpy."""

from __future__ import annotations

import dataclasses
import math

import mido
import numpy as np
import pytest

from blender_scripts import arrangement, layout, planner, song
from blender_scripts.errors import ContentError

from .helpers import DEPOT, write_midi


def _mido_onsets(path) -> list[float]:
    """Note-on times by mido's own playback clock (independent of our tempo map)."""
    t, out = 0.0, []
    for msg in mido.MidiFile(str(path)):
        t += msg.time
        if msg.type == "note_on" and msg.velocity > 0:
            out.append(t)
    return sorted(out)


@pytest.mark.parametrize("name", ["ode_waltz", "frere_groove"])
def test_demo_songs_parse_to_mido_times(name):
    tune = song.load(DEPOT / name / "song.mid")
    assert np.allclose(sorted(n.time for n in tune.notes), _mido_onsets(DEPOT / name / "song.mid"), atol=1e-9)
    assert 15 <= tune.end_time <= 25


def test_groove_has_percussion_and_tempo_changes_and_whole_bar_loop():
    tune = song.load(DEPOT / "frere_groove" / "song.mid")
    assert tune.tempo_changes == 3
    assert any(n.is_percussion for n in tune.notes)
    # 4 bars at 120 bpm (2 s) + 4 at 150 (1.6 s) + 3 at 100 (2.4 s)
    assert tune.bar_times[:6] == pytest.approx([0, 2, 4, 6, 8, 9.6])
    assert song.loop_length(tune) == pytest.approx(8 + 6.4 + 7.2)


def test_overlapping_repeats_of_one_pitch_pair_first_in_first_out(tmp_path):
    path = write_midi(tmp_path / "o.mid", [[(0, 60, 2), (1, 60, 2)]])
    notes = song.load(path).notes
    assert [(n.time, n.duration) for n in notes] == [(0.0, 1.0), (0.5, 1.0)]


def test_padded_track_names_are_trimmed(tmp_path):
    """Real-world files often pad track names with spaces; error messages name tracks without them."""
    mid = mido.MidiFile(type=1, ticks_per_beat=480)
    track = mido.MidiTrack([mido.MetaMessage("track_name", name="Cello" + " " * 30)])
    track += [
        mido.Message("note_on", note=60, velocity=90, time=0),
        mido.Message("note_off", note=60, time=480),
    ]
    mid.tracks.append(track)
    mid.save(str(tmp_path / "padded.mid"))
    assert song.load(tmp_path / "padded.mid").track_names == ("Cello",)


@pytest.mark.parametrize(
    ("content", "message"),
    [(None, "does not exist"), (b"", "is empty"), (b"MThd garbage" * 3, "not a valid standard MIDI")],
)
def test_bad_midi_is_one_clear_error(tmp_path, content, message):
    path = tmp_path / "bad.mid"
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(ContentError, match=message):
        song.load(path)


def test_song_without_notes_is_refused(tmp_path):
    path = write_midi(tmp_path / "silent.mid", [[]])
    with pytest.raises(ContentError, match="has no notes"):
        song.load(path)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("marble_size: 3\n", "marble_size: Extra inputs are not permitted"),
        ("tracks: {lead: tuba}\n", "unknown instrument 'tuba'"),
        ("restitution: 2\n", "restitution"),
        ("- a list\n", "must be a mapping"),
    ],
)
def test_bad_arrangement_is_one_clear_error(tmp_path, text, message):
    path = tmp_path / "a.yaml"
    path.write_text(text)
    with pytest.raises(ContentError, match=message):
        arrangement.load(path)


def test_arrangement_naming_a_missing_track_is_refused(tmp_path):
    tune = song.load(DEPOT / "ode_waltz" / "song.mid")
    arr = arrangement.Arrangement(tracks={"solo": "vibraphone"})
    with pytest.raises(ContentError, match=r"tracks \['solo'\] are not in"):
        arr.check_tracks(tune, "a.yaml")


def _plan(path, arr=None):
    tune = song.load(path)
    arr = arr or arrangement.Arrangement()
    stage = layout.build(tune, arr)
    return tune, planner.plan(tune, arr, stage, 60, song.loop_length(tune))


def test_marbles_touch_their_element_exactly_on_the_note(tmp_path):
    _, plan = _plan(DEPOT / "frere_groove" / "song.mid")
    for m in plan.marbles:
        for h in m.hits:
            p = m.positions(np.array([h.t]))[0]
            assert p[2] - plan.radius == pytest.approx(h.element.top_z, abs=1e-12)
            assert h.t == h.note.time
            assert h.v_in[2] < 0 < h.v_out[2]  # falls onto the surface, bounces up
            assert abs(p[0] - h.element.x) < h.element.width / 2


def test_fast_repeats_and_unisons_are_spread_over_lanes_and_flight_times(tmp_path):
    # 16 sixteenths at 240 bpm on one pitch (62 ms apart) plus the same pitch doubled by a second track
    notes = [(i / 4, 60, 0.2) for i in range(16)]
    path = write_midi(tmp_path / "dense.mid", [notes, [(0, 60, 1), (2, 60, 1)]], bpm=240)
    _, plan = _plan(path)
    assert len(plan.marbles) == 18
    assert len({m.lane for m in plan.marbles}) >= 2
    assert plan.min_distance() >= 2 * plan.radius
    assert plan.min_distance(loop=True) >= 2 * plan.radius


def test_a_fixed_layout_names_the_notes_it_cannot_place(tmp_path):
    import dataclasses

    path = write_midi(tmp_path / "triple.mid", [[(1, 64, 1)], [(1, 64, 1)], [(1, 64, 1)]])
    tune = song.load(path)
    arr = arrangement.Arrangement()
    stage = layout.build(tune, arr)
    narrow = {
        k: dataclasses.replace(el, lanes=el.lanes[:1], strikes=(0.0,)) for k, el in stage.elements.items()
    }
    with pytest.raises(ContentError, match=r"2 note\(s\) of triple cannot be placed.*pitch 64 at 0\.500s"):
        planner.plan(tune, arr, dataclasses.replace(stage, elements=narrow), 60, song.loop_length(tune))


def _dense(tmp_path):
    """A string-section texture: 32nd-note tremolo on one pitch, four tracks in unison on it, fast runs."""
    trem = [(i / 8, 62, 0.1) for i in range(64)]
    unison = [(i / 2, 62, 0.5) for i in range(16)]
    runs = [(i / 8, 60 + (i % 5), 0.1) for i in range(64)]
    return write_midi(tmp_path / "dense.mid", [trem, unison, unison, unison, runs], bpm=150)


def test_dense_passages_place_with_more_lanes_and_strike_points(tmp_path):
    tune = song.load(_dense(tmp_path))
    arr = arrangement.Arrangement()
    stage, plan = planner.place(tune, arr, 60, song.loop_length(tune))
    assert len(plan.marbles) == len(tune.notes) == 64 + 48 + 64
    busy = stage.elements[("marimba", 62)]
    assert len(busy.lanes) >= 5  # a unison of 4 + the tremolo
    assert min(np.diff(busy.lanes)) >= 2.2 * stage.radius - 1e-12
    assert plan.min_distance() >= 2 * plan.radius
    assert plan.min_distance(loop=True) >= 2 * plan.radius
    for _, h in plan.hits():  # still exact: centre one radius above the surface, at the note time
        el = h.element
        assert h.t == h.note.time
        assert h.point[2] - plan.radius == pytest.approx(el.top_z, abs=1e-12)
        assert abs(h.point[0] - el.x) + plan.radius <= el.width / 2 + 1e-9 or el.is_pad
        assert abs(h.point[1] - el.y) + plan.radius <= el.length / 2 + 1e-9


def test_strike_points_along_a_bar_take_a_unison_on_one_lane(tmp_path):
    import dataclasses

    tune = song.load(write_midi(tmp_path / "pair.mid", [[(1, 48, 0.5)], [(1, 48, 0.5)]], bpm=60))
    arr = arrangement.Arrangement()
    stage = layout.build(tune, arr)
    one_lane = {k: dataclasses.replace(el, lanes=el.lanes[:1]) for k, el in stage.elements.items()}
    plan = planner.plan(tune, arr, dataclasses.replace(stage, elements=one_lane), 60, song.loop_length(tune))
    (el,) = one_lane.values()
    assert sorted(m.hits[0].point[1] for m in plan.marbles) == [el.strikes[1], 0.0]  # middle, then a quarter
    assert plan.min_distance() >= 2 * plan.radius


def _sinks_into_an_element(plan, stage, m) -> bool:
    """Whether the marble's sphere comes closer than its radius (less 0.1 mm) to any element's box,
    sampled at 8 steps per frame (the box of a bar: width x length x 25 mm thick, top at z=0)."""
    t = np.arange(m.t_launch, m.t_exit, plan.step)
    p = m.positions(t)
    for el in stage.all_elements():
        lo = np.array([el.x - el.width / 2, el.y - el.length / 2, el.top_z - 0.025])
        hi = np.array([el.x + el.width / 2, el.y + el.length / 2, el.top_z])
        d = np.linalg.norm(np.maximum(np.maximum(lo - p, 0), p - hi), axis=1)
        if (d < plan.radius - 1e-4).any():
            return True
    return False


def test_repeats_chain_from_a_bar_onto_its_twin_exactly(tmp_path):
    """Quarter notes on one pitch at 150 bpm (0.4 s apart): one marble strikes the bar and bounces on
    onto the twin bar behind it, each contact on its note; the bounce keeps the physics (restitution
    about the normal, constant horizontal speed) and nothing else lands on the twin."""
    notes = [(i, 62, 0.5) for i in range(16)] + [(16 + i / 4, 64, 0.2) for i in range(16)]
    tune = song.load(write_midi(tmp_path / "repeats.mid", [notes], bpm=150))
    arr = arrangement.Arrangement()
    stage, plan = planner.place(tune, arr, 60, song.loop_length(tune))
    twin = stage.twins[("marimba", 62)]
    assert ("marimba", 64) not in stage.twins  # sixteenths (0.1 s) are too close to chain
    chains = [m for m in plan.marbles if len(m.hits) == 2]
    assert len(chains) >= 4
    assert sum(len(m.hits) for m in plan.marbles) == len(tune.notes)
    for m in chains:
        a, b = m.hits
        assert (a.element.name, b.element.name) == (stage.elements[("marimba", 62)].name, twin.name)
        assert b.note.time - a.note.time == pytest.approx(0.4)
        for h in m.hits:
            p = m.positions(np.array([h.t]))[0]
            assert np.allclose(p, h.point, atol=1e-12)
            assert h.point[2] - plan.radius == pytest.approx(h.element.top_z, abs=1e-12)
            assert abs(h.point[1] - h.element.y) + plan.radius <= h.element.length / 2
            assert abs(h.point[0] - h.element.x) < h.element.width / 2  # the contact is on the surface
        assert np.allclose(b.v_in, a.v_out - [0, 0, planner.G * (b.t - a.t)])  # free flight between
        assert a.v_out[2] == pytest.approx(-arr.restitution * a.v_in[2])
        assert b.v_out[2] == pytest.approx(-arr.restitution * b.v_in[2])
        assert a.v_in[1] == a.v_out[1] == b.v_out[1] > 0
    assert not any(_sinks_into_an_element(plan, stage, m) for m in plan.marbles)
    assert plan.min_distance() >= 2 * plan.radius
    assert plan.min_distance(loop=True) >= 2 * plan.radius


def test_a_note_aimed_at_the_bar_never_comes_down_on_its_twin():
    """The twin stands where a bounce off the bar lands: single strikes on the twin's lane are only
    kept when they fly clear over it (and the twin's own strikes and chains take that lane)."""
    el = layout.Element(
        "bar", "marimba", 60, x=0.0, top_z=0.0, length=0.4, width=0.1, lanes=(-0.022, 0.022), pan=0.0,
        strikes=(0.0, -0.1, 0.1),
    )  # fmt: skip
    twin = dataclasses.replace(el, name="bar_twin", x=0.022, width=0.03, lanes=(0.0,), y=0.8, first_lane=1)
    note = song.Note(0, 0, "t", 0, 60, 90, 1.0, 0.5)
    kept = dropped = 0
    for T in planner.FLIGHT_TIMES:
        for strike in el.strikes:
            free = planner._marble(note, el, 1, T, r=0.02, e=0.6, strike=strike)
            guarded = planner._marble(note, el, 1, T, r=0.02, e=0.6, strike=strike, ahead=(twin,))
            if free is None:
                continue
            back = 2 * free.hits[0].v_out[2] / planner.G
            down = free.hits[0].point[1] + free.hits[0].v_out[1] * back
            clear_over = down > twin.y_far + 0.02  # short of it, it would run into the twin's front face
            assert (guarded is None) != clear_over
            if guarded is not None:
                assert np.allclose(
                    guarded.positions(np.array([guarded.t_exit])), free.positions(np.array([free.t_exit]))
                )
            kept, dropped = kept + (guarded is not None), dropped + (guarded is None)
    assert dropped > 0


def test_marble_size_follows_the_density(tmp_path):
    sparse = song.load(write_midi(tmp_path / "sparse.mid", [[(i, 60 + i % 5, 1) for i in range(16)]], bpm=60))
    dense = song.load(
        write_midi(tmp_path / "dense.mid", [[(i / 4, 60 + i % 12, 0.25) for i in range(400)]] * 3, bpm=160)
    )
    auto = arrangement.Arrangement()
    r_sparse, r_dense = layout.radius_for(sparse, auto), layout.radius_for(dense, auto)
    assert r_sparse == layout.RADIUS_RANGE[1] and r_dense == layout.RADIUS_RANGE[0]
    assert layout.build(sparse, auto).spacing > layout.build(dense, auto).spacing  # spacing follows
    fixed = arrangement.Arrangement(marble_radius=0.02)
    assert layout.radius_for(sparse, fixed) == layout.radius_for(dense, fixed) == 0.02
    _, plan = planner.place(dense, auto, 60, song.loop_length(dense))
    assert plan.radius == r_dense and plan.min_distance() >= 2 * r_dense


def test_neighbouring_columns_never_share_x():
    """Lanes of different elements stay >= 2.2 radii apart, so marbles of different elements cannot meet."""
    tune = song.load(DEPOT / "frere_groove" / "song.mid")
    arr = arrangement.Arrangement()
    stage = layout.build(tune, arr, {key: 4 for key in list(layout.build(tune, arr).elements)[::2]})
    xs = sorted(el.x + off for el in stage.elements.values() for off in el.lanes)
    assert min(np.diff(xs)) >= 2.2 * stage.radius - 1e-9


def test_plan_is_deterministic():
    _, a = _plan(DEPOT / "frere_groove" / "song.mid")
    _, b = _plan(DEPOT / "frere_groove" / "song.mid")
    assert [(m.lane, m.t_launch, tuple(m.v0)) for m in a.marbles] == [
        (m.lane, m.t_launch, tuple(m.v0)) for m in b.marbles
    ]
    assert not math.isinf(a.min_distance())


def test_type0_file_reads_like_its_type1_original(tmp_path):
    original = mido.MidiFile(str(DEPOT / "frere_groove" / "song.mid"))
    merged = mido.MidiFile(type=0, ticks_per_beat=original.ticks_per_beat)
    merged.tracks.append(mido.merge_tracks(original.tracks))
    merged.save(str(tmp_path / "t0.mid"))
    one, zero = song.load(DEPOT / "frere_groove" / "song.mid"), song.load(tmp_path / "t0.mid")
    key = lambda n: (round(n.time, 9), n.channel, n.pitch)  # noqa: E731
    assert sorted(map(key, zero.notes)) == sorted(map(key, one.notes))
    assert zero.bar_times == pytest.approx(one.bar_times)


def test_loop_audio_tails_wrap_onto_the_start():
    from blender_scripts import audio

    period = 1.0
    buf = np.zeros((int(1.5 * audio.RATE), 2), dtype=np.float32)
    buf[int(1.2 * audio.RATE), 0] = 0.5  # a tail 0.2 s past the loop's end
    buf[10, 1] = 0.25
    looped = audio.fold(buf, period)
    assert looped.shape == (audio.RATE, 2)
    assert looped[int(0.2 * audio.RATE), 0] == 0.5 and looped[10, 1] == 0.25
    assert looped.sum() == pytest.approx(0.75)


def test_general_midi_program_picks_the_family(tmp_path):
    assert [arrangement.gm_family(p) for p in (0, 9, 11, 12, 24, 40, 48, 56, 73)] == [
        "marimba", "glockenspiel", "vibraphone", "marimba", "strings", "strings", "strings", "vibraphone",
        "vibraphone",
    ]  # fmt: skip
    mid = mido.MidiFile(type=1, ticks_per_beat=480)
    for channel, program in ((0, 40), (1, 11), (9, 0)):
        track = mido.MidiTrack([mido.Message("program_change", channel=channel, program=program, time=0)])
        track += [
            mido.Message("note_on", channel=channel, note=62 if channel != 9 else 38, velocity=90, time=0),
            mido.Message("note_off", channel=channel, note=62 if channel != 9 else 38, time=480),
        ]
        mid.tracks.append(track)
    mid.save(str(tmp_path / "gm.mid"))
    tune = song.load(tmp_path / "gm.mid")
    stage = layout.build(tune, arrangement.Arrangement())
    assert sorted(stage.elements) == [("drums", 38), ("strings", 62), ("vibraphone", 62)]
    assert sorted(layout.build(tune, arrangement.Arrangement(tracks={"0": "marimba"})).elements)[1] == (
        "marimba", 62,
    )  # fmt: skip


def test_reaction_is_at_rest_on_every_contact_and_moves_in_between():
    from blender_scripts import reactions

    el = next(iter(_plan(DEPOT / "ode_waltz" / "song.mid")[1].marbles)).element
    mo = reactions.motion(el)
    hits = [(0.0, 1.0), (0.5, 0.8), (0.51, 0.8), (0.53, 1.0), (2.0, 0.5)]  # a fast flam in the middle
    fps, offset = 60, 0.3
    frames, values = reactions.curve(hits, mo, fps, offset)
    assert np.all(np.diff(frames) > 0)
    hit_frames = [1 + (t + offset) * fps for t, _ in hits]
    for f in hit_frames:
        assert np.interp(f, frames, values) == 0.0  # the surface is where the marble was aimed
        assert np.interp(f - 0.02, frames, values) == 0.0  # and was not moving just before
    assert abs(np.interp(hit_frames[0] + 6, frames, values)) > 0.2 * mo.amplitude  # it rings after a hit
    assert np.interp(hit_frames[-1] + 4, frames, values) != 0.0


def test_camera_path_pans_across_a_wide_machine_and_keeps_marbles_12px(tmp_path):
    from blender_scripts import camera_rig

    run = [(i / 4, 24 + i, 0.25) for i in range(84)] + [(21 + i / 4, 107 - i, 0.25) for i in range(84)]
    tune, plan = _plan(write_midi(tmp_path / "wide.mid", [run], bpm=100))
    stage = layout.build(tune, arrangement.Arrangement())
    assert stage.x_max - stage.x_min > 4.0
    rig = camera_rig.path(plan, stage, 30.0, start=-1.0, end=tune.end_time + 1, loop=False)
    follow = rig.times > camera_rig.ESTABLISH_S + 1.5
    assert np.ptp(rig.target[follow, 0]) > 1.5  # it travels along the machine with the run
    dist = np.linalg.norm(rig.location - rig.target, axis=1)
    assert dist.max() <= camera_rig.max_distance(plan.radius, 30.0) + 1e-9
    far = dist + np.dot(
        camera_rig.VIEW_DIR,
        [0, camera_rig.TARGET_Y - planner.LAUNCH_Y, camera_rig.TARGET_Z - planner.LAUNCH_Z],
    )
    assert camera_rig.marble_px(plan.radius, 30.0, far).min() >= 12.0
    loop = camera_rig.path(plan, stage, 30.0, start=0.0, end=plan.period, loop=True)
    assert np.allclose(loop.location[0], loop.location[-1]) and np.allclose(loop.target[0], loop.target[-1])


def test_a_dense_pop_machine_fits_one_view_with_its_twins_near_the_middle(tmp_path):
    """The generated pop song (six parts and a kit): its whole row fits the view at the distance cap with
    the visibility measure's edge margin to spare, and the twin bars (nearer the camera, so perspective
    pushes them outward) stand in the middle 60% of the row, never at its ends."""
    from blender_scripts import camera_rig, demo_songs

    path = tmp_path / "dense_pop.mid"
    demo_songs.dense_pop().save(str(path))
    tune = song.load(path)
    arr = arrangement.Arrangement()
    stage, plan = planner.place(tune, arr, 60, song.loop_length(tune))
    assert stage.twins  # the song has chains
    lens = arr.camera.lens
    lo, hi = camera_rig.view_x_range(0.0, camera_rig.max_distance(plan.radius, lens), lens)
    width = stage.x_max - stage.x_min
    assert width <= 0.94 * (hi - lo)  # blender_scripts.visibility.EDGE_MARGIN (3%) either side
    mid, half = (stage.x_max + stage.x_min) / 2, width / 2
    assert all(abs(t.x - mid) <= 0.6 * half for t in stage.twins.values())  # the ends: quiet families
    drums = [e for e in stage.elements.values() if e.is_pad]
    assert drums and all(len(e.lanes) >= 2 and e.length >= 4 * plan.radius for e in drums)
