"""The build entrypoint end to end with real bpy: contract, exact timing and separation measured from the
SAVED .blend files, loop seam, audio alignment, determinism and every bad-input case."""

from __future__ import annotations

import json
import wave
from pathlib import Path

import numpy as np
import pytest

from blender_scripts import audio
from blender_scripts.scene import channelbag_fcurves

from .helpers import DEPOT, ROOT, last_json, run_cli, write_midi
from .test_song import _mido_onsets

pytestmark = [pytest.mark.slow, pytest.mark.bpy]
CONTRACT_KEYS = {
    "blend",
    "loop_blend",
    "wav",
    "report",
    "notes",
    "frames",
    "loop_frames",
    "fps",
    "duration_s",
}


def _open(path):
    import bpy

    bpy.ops.wm.open_mainfile(filepath=str(path), load_ui=False)
    return bpy.context.scene


@pytest.mark.parametrize("name", ["ode_waltz", "frere_groove"])
def test_build_writes_the_contract_files_and_one_json_line_last(built, name):
    result = built[name]
    assert set(result) >= CONTRACT_KEYS
    out = Path(result["blend"]).parent
    assert sorted(p.name for p in out.iterdir()) == [
        "report.json", "song.blend", "song.wav", "song_loop.blend", "song_loop.wav",
    ]  # fmt: skip
    assert not list(out.parent.glob(".scene.tmp-*"))
    assert result["frames"][0] == 1 and result["fps"] == 60
    assert result["duration_s"] == pytest.approx(result["frames"][1] / 60)
    report = json.loads(Path(result["report"]).read_text())
    assert report["build_time_s"] > 0
    assert len(report["notes"]) == result["notes"] == len(_mido_onsets(DEPOT / name / "song.mid"))
    for note in report["notes"]:
        assert {"track", "pitch", "time", "element", "launch_time", "impact_time", "error"} <= set(note)
        assert note["launch_time"] < note["impact_time"]
    assert report["max_timing_error_s"] < 1e-3
    assert report["min_marble_distance_m"] >= 2 * report["marble_radius_m"]
    assert result["stdout"].strip().splitlines()[-1].startswith("{")


@pytest.mark.parametrize("name", ["ode_waltz", "frere_groove"])
@pytest.mark.parametrize("variant", ["blend", "loop_blend"])
def test_saved_blend_hits_every_note_within_1ms_and_keeps_marbles_apart(built, name, variant):
    from blender_scripts import measure

    scene = _open(built[name][variant])
    hits = measure.impacts(scene)
    assert max(h["error"] for h in hits) < 1e-3
    assert all(h["on_surface"] and abs(h["gap_m"]) < 1e-4 for h in hits)
    by_marble: dict[str, list[str]] = {}
    for h in sorted(hits, key=lambda h: h["impact_time"]):
        by_marble.setdefault(h["marble"], []).append(h["element"])
    chains = [els for els in by_marble.values() if len(els) > 1]
    assert chains and all(els == [els[0], f"{els[0]}_twin"] for els in chains)  # a bar, then its twin
    played = sorted(h["impact_time"] for h in hits if h["marble"].count("_") == 1)  # one copy per note
    assert np.allclose(played, _mido_onsets(DEPOT / name / "song.mid"), atol=1e-3)
    clear = measure.clearance(scene)
    assert clear["pairs_checked"] > 0
    assert clear["pairs_closer_than_2r"] == 0
    assert clear["min_distance_m"] >= 2 * clear["radius_m"]
    assert clear["element_penetrations"] == []


@pytest.mark.parametrize("variant", ["blend", "loop_blend"])
def test_saved_blend_has_the_render_settings_of_render_py(built, variant):
    from blender_scripts import render

    scene = _open(built["ode_waltz"][variant])
    preset = render.DEFAULT_PRESET
    assert scene.render.engine == "CYCLES"
    assert (scene.render.resolution_x, scene.render.resolution_y) == (
        render.PRESETS[preset].width,
        render.PRESETS[preset].height,
    )
    assert scene.cycles.samples == render.PRESETS[preset].samples


@pytest.mark.parametrize("variant", ["blend", "loop_blend"])
def test_saved_blend_blurs_the_marbles_and_nothing_else(built, variant):
    """Cycles motion blur at a 180-degree shutter, on the marbles only (instruments, stage and camera sharp)."""
    scene = _open(built["frere_groove"][variant])
    assert scene.render.use_motion_blur and scene.render.motion_blur_shutter == pytest.approx(0.5)
    marbles = set(scene.collection.children["Marbles"].all_objects)
    assert marbles and all(m.cycles.use_motion_blur for m in marbles)
    others = [o for o in scene.objects if o not in marbles]
    assert others and not any(o.cycles.use_motion_blur for o in others)
    assert scene.camera in others


def test_marbles_and_instruments_collections_and_visibility(built):
    from blender_scripts.scene import channelbag_fcurves

    report = json.loads(Path(built["frere_groove"]["report"]).read_text())
    scene = _open(built["frere_groove"]["blend"])
    marbles = scene.collection.children["Marbles"].objects
    assert len(marbles) == report["marbles"] == len(report["notes"]) - report["chains"]
    assert sorted(i for o in marbles for i in o["hit_notes"]) == sorted(n["index"] for n in report["notes"])
    assert sorted(o.name for o in scene.collection.children["Instruments"].objects) == report["elements"]
    offset = report["lead_in_s"]
    by_index = {n["index"]: n for n in report["notes"]}
    for obj in marbles:
        curves = {(fc.data_path, fc.array_index): fc for fc in channelbag_fcurves(obj)}
        assert all(curves[("location", i)].keyframe_points[1].interpolation == "BEZIER" for i in range(3))
        notes = [by_index[i] for i in obj["hit_notes"]]
        frame = lambda t: 1 + (t + offset) * 60  # noqa: E731
        hide = curves[("hide_render", 0)]
        assert hide.evaluate(frame(notes[0]["launch_time"]) - 0.5) == 1.0
        for note in notes:  # in play on every note it strikes
            assert hide.evaluate(frame(note["time"])) == 0.0
            assert curves[("hide_viewport", 0)].evaluate(frame(note["time"])) == 0.0
        assert hide.evaluate(frame(notes[-1]["exit_time"]) + 0.5) == 1.0
    strip = scene.sequence_editor.strips[0]
    assert strip.sound.filepath == "//song.wav" and strip.frame_start == 1
    assert any(fc.data_path.endswith('"Emission Strength"].default_value') for fc in _material_curves(scene))


def _material_curves(scene):
    from blender_scripts.scene import channelbag_fcurves

    for obj in scene.collection.children["Instruments"].objects:
        yield from channelbag_fcurves(obj.active_material.node_tree)


def test_loop_state_at_the_end_flows_into_frame_one(built):
    from blender_scripts.scene import channelbag_fcurves

    result = built["frere_groove"]
    scene = _open(result["loop_blend"])
    last = result["loop_frames"][1]
    assert last == round(scene["renderlab_period_s"] * 60) == 1296

    def state(frame):
        out = []
        for obj in scene.collection.children["Marbles"].objects:
            curves = {(fc.data_path, fc.array_index): fc for fc in channelbag_fcurves(obj)}
            if curves[("hide_render", 0)].evaluate(frame) < 0.5:
                out.append(tuple(round(curves[("location", i)].evaluate(frame), 5) for i in range(3)))
        return sorted(out)

    start = state(1)
    assert start, "marbles launched before t=0 must already be in flight at frame 1"
    assert start == state(last + 1)

    def parts(frame):  # every other animated part: reacting instruments, launchers, camera rig
        return [
            (obj.name, fc.data_path, fc.array_index, round(fc.evaluate(frame), 6))
            for obj in scene.objects
            if obj.animation_data and "Marbles" not in [c.name for c in obj.users_collection]
            for fc in channelbag_fcurves(obj)
        ]

    assert parts(1) == parts(last + 1)
    with wave.open(result["loop_wav"].replace(".wav", ".wav")) as w:
        assert w.getnframes() == round(scene["renderlab_period_s"] * audio.RATE)


def test_audio_starts_on_the_sample_of_the_first_impact(built):
    report = json.loads(Path(built["ode_waltz"]["report"]).read_text())
    with wave.open(built["ode_waltz"]["wav"]) as w:
        assert (w.getnchannels(), w.getframerate()) == (2, audio.RATE)
        assert w.getnframes() == built["ode_waltz"]["frames"][1] * audio.RATE // 60
        pcm = np.frombuffer(w.readframes(w.getnframes()), dtype="<i2").reshape(-1, 2)
    onset = round((report["lead_in_s"] + report["notes"][0]["time"]) * audio.RATE)
    first = int(np.argmax(np.abs(pcm).max(axis=1) > 0))
    # FluidSynth one-shot placed on its strike sample (exactness is proven in test_audio): silence before,
    # sound within the very first 64-sample block of the strike
    assert onset <= first < onset + audio.BLOCK
    assert np.abs(pcm[onset + 200 : onset + 2000]).max() > 1000  # the strike is loud


def test_same_input_gives_the_same_output(built, tmp_path):
    again = last_json(run_cli("build", "--midi", DEPOT / "ode_waltz" / "song.mid", "--out", tmp_path / "b"))
    first = built["ode_waltz"]

    def report(result):
        data = json.loads(Path(result["report"]).read_text())
        data.pop("build_time_s"), data.pop("build_phases_s"), data.pop("outputs")
        return data

    assert report(again) == report(first)
    for key in ("wav", "loop_wav"):
        assert Path(again[key]).read_bytes() == Path(first[key]).read_bytes()
    assert _keys(again["blend"]) == _keys(first["blend"])
    # The meshes too, in their order: Cycles builds its BVH in that order, so a mesh whose faces come out in
    # another order (create_uvsphere's followed memory addresses) renders a reflection a little apart.
    assert _meshes(again["blend"]) == _meshes(first["blend"])


def _meshes(path):
    import bpy

    _open(path)
    return {
        mesh.name: (
            [tuple(round(c, 7) for c in v.co) for v in mesh.vertices],
            [tuple(p.vertices) for p in mesh.polygons],
        )
        for mesh in bpy.data.meshes
    }


def _keys(path):
    from blender_scripts.scene import channelbag_fcurves

    scene = _open(path)
    return {
        (obj.name, fc.data_path, fc.array_index): [
            tuple(k.co) + tuple(k.handle_left) + tuple(k.handle_right) for k in fc.keyframe_points
        ]
        for obj in scene.objects
        if obj.animation_data
        for fc in channelbag_fcurves(obj)
    }


def test_runs_as_a_file_like_under_the_blender_binary(tmp_path):
    """`blender -b --python blender_scripts/build.py -- args` loads the file, not the package."""
    import subprocess
    import sys

    midi = write_midi(tmp_path / "tiny.mid", [[(0, 60, 1), (1, 64, 1), (2, 67, 1)]])
    proc = subprocess.run(
        [sys.executable, str(ROOT / "blender_scripts" / "build.py"), "--", "--midi", str(midi), "--out", str(tmp_path / "o")],
        capture_output=True, text=True, timeout=300, cwd=tmp_path, check=False,
    )  # fmt: skip
    result = last_json(proc)
    assert result["notes"] == 3 and Path(result["blend"]).name == "tiny.blend"


def test_a_python_without_the_dependencies_gets_one_clear_error(tmp_path):
    """Blender's bundled Python lacks mido/pydantic/yaml: say so instead of a traceback."""
    import subprocess
    import sys

    proc = subprocess.run(
        [sys.executable, "-S", str(ROOT / "blender_scripts" / "build.py"), "--", "--midi", "x.mid", "--out", str(tmp_path / "o")],
        capture_output=True, text=True, timeout=60, cwd=tmp_path, check=False,
    )  # fmt: skip
    assert proc.returncode == 2
    assert proc.stderr.startswith("build: error: Python module 'mido' is missing")
    assert not (tmp_path / "o").exists()


def _bad_cases(tmp: Path) -> dict[str, tuple[list, str]]:
    empty = tmp / "empty.mid"
    empty.write_bytes(b"")
    corrupt = tmp / "corrupt.mid"
    corrupt.write_bytes(b"MThd\x00\x00\x00\x06\x00\x01\x00\x02\x01\xe0MTrk\x00\x00\x10\x00\x90")
    silent = write_midi(tmp / "silent.mid", [[]])
    ok = write_midi(tmp / "ok.mid", [[(0, 60, 1)]])
    unknown_key = tmp / "key.yaml"
    unknown_key.write_text("tracks: {}\nmarble_colour: red\n")
    unknown_instr = tmp / "instr.yaml"
    unknown_instr.write_text("tracks: {1: theremin}\n")
    missing_track = tmp / "track.yaml"
    missing_track.write_text("tracks: {bass: marimba}\n")
    return {
        "missing midi": (["--midi", tmp / "nope.mid"], "does not exist"),
        "empty midi": (["--midi", empty], "is empty"),
        "corrupt midi": (["--midi", corrupt], "not a valid standard MIDI file"),
        "no notes": (["--midi", silent], "has no notes"),
        "unknown arrangement key": (
            ["--midi", ok, "--arrangement", unknown_key],
            "marble_colour: Extra inputs",
        ),
        "unknown instrument": (
            ["--midi", ok, "--arrangement", unknown_instr],
            "unknown instrument 'theremin'",
        ),
        "unknown track": (["--midi", ok, "--arrangement", missing_track], r"tracks ['bass'] are not in"),
        "bad fps": (["--midi", ok, "--fps", "0"], "--fps 0 is out of range"),
        "no midi arg": ([], "the following arguments are required: --midi"),
    }


BAD_IDS = [
    "missing midi", "empty midi", "corrupt midi", "no notes", "unknown arrangement key",
    "unknown instrument", "unknown track", "bad fps", "no midi arg",
]  # fmt: skip


@pytest.mark.parametrize("case", BAD_IDS)
def test_bad_input_is_one_clear_error_and_leaves_nothing(tmp_path, case):
    args, message = _bad_cases(tmp_path)[case]
    out = tmp_path / "out"
    proc = run_cli("build", *args, "--out", out)
    assert proc.returncode == 2
    errors = [line for line in proc.stderr.splitlines() if "error" in line]
    assert len(errors) == 1 and errors[0].startswith("build: error: ")
    assert message in errors[0]
    assert proc.stdout.strip() == ""
    assert not out.exists()
    assert not list(tmp_path.glob(".out.tmp-*"))


@pytest.mark.parametrize("variant", ["blend", "loop_blend"])
def test_instruments_react_from_the_contact_and_are_at_rest_on_every_hit(built, variant):
    """Measured from the saved file: each element's own motion is 0 at every contact on it (so the next
    hit stays exact) and actually moves right after a hit."""
    from blender_scripts import measure

    scene = _open(built["frere_groove"][variant])
    hits = measure.impacts(scene)
    assert max(h["surface_moved"] for h in hits) < 1e-9  # metres or radians: at rest to float precision
    instruments = scene.collection.children["Instruments"].objects
    moved_after = [
        measure.reaction_at(
            instruments[h["element"]], 1 + (h["impact_time"] + scene["renderlab_offset_s"]) * 60 + 3
        )
        for h in hits
    ]
    assert sum(m > 1e-4 for m in moved_after) > len(hits) // 2
    kinds = {fc.data_path for obj in instruments for fc in channelbag_fcurves(obj)}
    assert kinds == {"delta_location", "delta_rotation_euler"}  # bars/heads dip, cymbals swing


def _marble_px(scene, frame):
    """Diameter in pixels on a 1920-pixel frame edge of every marble in view at `frame`."""
    from bpy_extras.object_utils import world_to_camera_view

    scene.frame_set(frame)
    cam = scene.camera
    focal_px = cam.data.lens / cam.data.sensor_width * 1920
    out = []
    for obj in scene.collection.children["Marbles"].objects:
        if obj.hide_render:
            continue
        co = world_to_camera_view(scene, cam, obj.matrix_world.translation)
        if 0 <= co.x <= 1 and 0 <= co.y <= 1 and co.z > 0:
            out.append(2 * scene["renderlab_marble_radius"] * focal_px / co.z)
    return out


def test_camera_follows_and_keeps_marbles_at_least_12px_at_1080p(built):
    scene = _open(built["frere_groove"]["blend"])
    sizes, xs = [], []
    for frame in range(1, scene.frame_end + 1, 12):
        sizes += _marble_px(scene, frame)
        xs.append(tuple(round(v, 3) for v in scene.camera.matrix_world.translation))
    assert sizes and min(sizes) >= 12.0
    assert len(set(xs)) > 5  # the camera moves with the music (a small machine: it dollies in and out)


def test_loop_camera_loops(built):
    scene = _open(built["frere_groove"]["loop_blend"])
    last = scene.frame_end
    scene.frame_set(1)
    start = scene.camera.matrix_world.copy()
    scene.frame_set(last + 1)
    assert np.allclose(np.array(scene.camera.matrix_world), np.array(start), atol=1e-6)
    assert min(_marble_px(scene, 1)) >= 12.0
