"""Build both demo songs once per session with the real entrypoint (real bpy)."""

from __future__ import annotations

import pytest

from blender_scripts import arrangement, planner, song

from .helpers import DEPOT, last_json, run_cli, write_midi

SONGS = {
    "ode_waltz": (),
    "frere_groove": ("--arrangement", DEPOT / "frere_groove" / "arrangement.yaml"),
}


@pytest.fixture(scope="session")
def built(tmp_path_factory) -> dict[str, dict]:
    out = {}
    for name, extra in SONGS.items():
        folder = tmp_path_factory.mktemp(f"build-{name}") / "scene"
        proc = run_cli("build", "--midi", DEPOT / name / "song.mid", *extra, "--out", folder)
        out[name] = last_json(proc) | {"stderr": proc.stderr, "stdout": proc.stdout}
    return out


@pytest.fixture(scope="session")
def dense_pop(tmp_path_factory) -> dict:
    """The generated six-part pop song with drums (demo_songs.dense_pop: every instrument family, the
    cymbals too), built by the real entrypoint."""
    from blender_scripts import demo_songs

    folder = tmp_path_factory.mktemp("dense")
    demo_songs.dense_pop().save(str(folder / "dense_pop.mid"))
    return last_json(run_cli("build", "--midi", folder / "dense_pop.mid", "--out", folder / "scene"))


@pytest.fixture
def small_scene(tmp_path):
    """A two-bar tune on marimba, built in this process: (the main scene, its note count)."""
    from blender_scripts import scene

    notes = [(i / 2, 60 + (i * 5) % 14, 0.4) for i in range(16)]
    tune = song.load(write_midi(tmp_path / "small.mid", [notes], bpm=120))
    arr = arrangement.Arrangement()
    stage, plan = planner.place(tune, arr, 60, song.loop_length(tune))
    lead_in = 1.0
    frame_end = round((lead_in + tune.end_time + 1.5) * 60)
    return scene.SceneBuilder(plan, stage, arr, "small", 60).build("main", lead_in, frame_end), len(
        tune.notes
    )
