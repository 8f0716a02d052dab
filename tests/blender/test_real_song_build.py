"""A real pop song with drums (the first 60 s of renderlab/workstation/real_midi.py's pop_blue_sky: nine
programs, too wide for one row) built by the real entrypoint, and its report read as the issue asks: at least
95 % of the strikes seen (in view and not hidden: Blender's own ray casts, the upper tier's tray and legs
included), the median marble at least 16 px at 1080p, timing exact, no two marbles touching, the empty
background at most a quarter of the frame; in the main scene and in the loop."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from renderlab.workstation import real_midi

from .helpers import excerpt, last_json, run_cli

pytestmark = [pytest.mark.slow, pytest.mark.bpy]


@pytest.fixture(scope="module")
def report(tmp_path_factory) -> dict:
    try:
        src = real_midi.fetch(["pop_blue_sky"])["pop_blue_sky"]
    except real_midi.DownloadError as e:
        pytest.skip(f"the real MIDI files could not be fetched ({e}): run `make real-midi`")
    folder = tmp_path_factory.mktemp("real")
    song = excerpt(src, folder / "blue_sky_60s.mid", 60.0)
    out = last_json(run_cli("build", "--midi", song, "--out", folder / "scene", timeout=900))
    return json.loads(Path(out["report"]).read_text())


def test_a_real_pop_song_is_built_on_tiers_and_every_strike_is_seen(report):
    assert report["tiers"] >= 2
    for key in ("strike_visibility", "loop_strike_visibility"):
        seen = report[key]
        assert seen["fraction"] >= 0.95 and seen["median_px"] >= 16.0, (key, seen)
    assert report["max_timing_error_s"] < 1e-3
    touch = 2 * report["marble_radius_m"]
    assert report["min_marble_distance_m"] >= touch and report["loop_min_marble_distance_m"] >= touch
    for key in ("background", "loop_background"):
        assert report[key]["fraction"] <= report[key]["target"], (key, report[key])
