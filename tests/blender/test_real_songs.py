"""Real multi-instrument MIDI (renderlab/workstation/real_midi.py: pop with drums, a recorded piano performance,
a string ensemble), planned as the build plans it, framed as the camera rig frames it: at least 95 % of the
strikes in view and the median marble at least 16 px wide at 1080p, in the main scene and in the loop.

This is the build report's measure without Blender (camera_rig.strikes_seen: the same projection and margin,
not the occlusion rays), so it runs over every song in seconds; one of them is built for real, occlusion and
all, in test_real_song_build.py. A one-row machine for the widest song misses this bar, which is why the
layout cuts wide rows into tiers (layout.py): the test that turns tiers off shows this check can fail."""

from __future__ import annotations

import math

import numpy as np
import pytest

from blender_scripts import arrangement, build, camera_rig, layout, planner, song
from renderlab.workstation import real_midi

pytestmark = [pytest.mark.slow]

VISIBLE, MEDIAN_PX = 0.95, 16.0


@pytest.fixture(scope="session")
def real_songs() -> dict:
    try:
        return real_midi.fetch()
    except real_midi.DownloadError as e:
        pytest.skip(f"the real MIDI files could not be fetched ({e}): run `make real-midi`")


def _planned(path) -> tuple[song.Song, layout.Layout, planner.Plan]:
    tune = song.load(path)
    stage, plan = planner.place(tune, arrangement.Arrangement(), 60, song.loop_length(tune))
    return tune, stage, plan


def _framed(tune, stage, plan, *, loop: bool) -> tuple[float, float]:
    """(fraction of strikes in view, median marble px) through the camera path of the main scene or the loop."""
    lens = arrangement.Arrangement().camera.lens
    if loop:
        start, end = 0.0, plan.period
    else:  # as the build sizes the main scene
        lead_in, end = build.main_span(tune, plan, 60)
        start = -lead_in
    rig = camera_rig.path(plan, stage, lens, start=start, end=end, loop=loop)
    seen, px = camera_rig.strikes_seen(plan, rig, lens)
    return float(seen.mean()), float(np.median(px))


@pytest.mark.parametrize("name", sorted(real_midi.SONGS))
def test_a_real_song_is_seen_as_it_plays(real_songs, name):
    planned = _planned(real_songs[name])
    for loop in (False, True):
        fraction, median = _framed(*planned, loop=loop)
        assert fraction >= VISIBLE, (name, "loop" if loop else "main", fraction)
        assert median >= MEDIAN_PX, (name, "loop" if loop else "main", median)


def test_the_widest_song_needs_its_tiers(real_songs, monkeypatch):
    tune, stage, plan = _planned(real_songs["pop_blue_sky"])
    assert stage.tiers == 3 and _framed(tune, stage, plan, loop=False)[0] >= VISIBLE
    # Every tier's marbles keep to their room: below the tray of the tier above, in their tray before they
    # pass over the tier in front; and no two marbles of the whole machine ever come within two radii.
    for m in plan.marbles:
        el = m.element
        _, points, vels = m.knots
        assert float((points[:, 2] + np.maximum(vels[:, 2], 0) ** 2 / (2 * planner.G)).max()) <= el.ceiling_z
        assert float(m.positions(np.array([m.t_exit]))[0, 1]) <= el.exit_y_max
    assert plan.min_distance() >= 2 * plan.radius
    monkeypatch.setattr(layout, "TIER_SPLIT_R", math.inf)  # the same song on one row
    tune, stage, plan = _planned(real_songs["pop_blue_sky"])
    assert stage.tiers == 1 and _framed(tune, stage, plan, loop=False)[0] < 0.6


def test_a_row_is_cut_into_tiers_of_about_equal_width_at_element_ends():
    placed = [("marimba", 60 + i, 0.05 + 0.1 * i, 0.3, 0.1, (0.0,)) for i in range(10)]  # 1 m of 0.1 m slabs
    rows = layout._cut(placed, 3)
    assert [len(r) for r in rows] == [3, 4, 3] and sum(rows, []) == placed
    assert layout._cut(placed, 1) == [placed]


def test_never_more_tiers_than_elements(tmp_path, monkeypatch):
    """Two elements wider than any tier (a guard, not a layout anyone gets from the default bounds): two tiers,
    one element each, not a failed cut."""
    from .helpers import write_midi

    monkeypatch.setattr(layout, "TIER_SPLIT_R", 1.0)
    monkeypatch.setattr(layout, "TIER_WIDTH_R", 1.0)
    tune = song.load(write_midi(tmp_path / "two.mid", [[(0, 60, 1), (1, 67, 1)]]))
    stage = layout.build(tune, arrangement.Arrangement())
    assert stage.tiers == 2 and sorted(e.tier for e in stage.elements.values()) == [0, 1]
