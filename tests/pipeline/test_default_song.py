"""One default song everywhere, bundled and seeded: the DAG's param, `make render`, the trigger and demo
CLIs and the depot seed all name depot_songs.DEFAULT_SONG; triggered with no song, it renders."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys

import pytest

from renderlab.lab import depot_seed
from renderlab.pipeline.depot_songs import DEFAULT_SONG
from tests.pipeline.conftest import REPO, run_dag


def test_the_default_song_is_bundled_and_every_default_names_it(monkeypatch):
    assert (REPO / "depot" / "songs" / DEFAULT_SONG / "song.mid").is_file()
    make = subprocess.run(["make", "-s", "print-SONG"], cwd=REPO, capture_output=True, text=True, check=True)
    assert make.stdout.strip() == DEFAULT_SONG
    helptext = subprocess.run(
        [sys.executable, "-m", "renderlab.workstation.trigger", "--help"],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert f"(default {DEFAULT_SONG})" in " ".join(helptext.split())
    monkeypatch.delenv("AIRFLOW_VAR_RENDERLAB", raising=False)
    from dags import render

    assert render._params()["song"].value == DEFAULT_SONG


def test_the_seed_copies_the_bundled_songs_once(tmp_path):
    written = depot_seed.seed_file(tmp_path / "depot")
    assert f"{DEFAULT_SONG}/song.mid" in written
    assert depot_seed.seed_file(tmp_path / "depot") == []  # a second seed changes nothing
    (tmp_path / "depot" / DEFAULT_SONG / "song.mid").write_bytes(b"changed")
    assert depot_seed.seed_file(tmp_path / "depot") == [f"{DEFAULT_SONG}/song.mid"]


@pytest.mark.slow
@pytest.mark.airflow
@pytest.mark.bpy
@pytest.mark.skipif(
    importlib.util.find_spec("blender_scripts.render") is None or importlib.util.find_spec("bpy") is None,
    reason="needs blender_scripts (build + render) and the bpy wheel",
)
def test_the_default_song_renders_from_the_seeded_depot(airflow_home, tmp_path):
    depot = tmp_path / "depot"
    depot_seed.seed_file(depot)
    share = tmp_path / "share"
    # No song in the conf: the DAG's default param, as a user who only presses Trigger.
    conf = {"frames": "1-4", "samples": 1, "resolution_percentage": 10, "frames_per_chunk": 4}
    r = run_dag(airflow_home, share, depot, conf, settings={"fps": 24})
    assert r["state"] == "success", r["log"][-4000:]
    (run_dir,) = (share / "runs").iterdir()
    video = run_dir / "video" / f"{DEFAULT_SONG}_main.mp4"
    assert video.stat().st_size > 0
    validation = json.loads((run_dir / "report" / "validation.json").read_text())
    assert validation["ok"] is True
