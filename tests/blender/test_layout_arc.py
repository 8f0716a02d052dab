"""The row's arc (layout.arc_depth, pure Python): the elements bend into an arc facing the camera, deeper
the more elements the song needs, as far as the camera's widest view still holds the row; each column
(launchers, bar, twin) moves along y as one, so every flight is the straight row's flight, shifted."""

from __future__ import annotations

import numpy as np
import pytest

from blender_scripts import arrangement, camera_rig, layout, planner, song

from .helpers import write_midi


def _place(path, arr=None):
    tune = song.load(path)
    arr = arr or arrangement.Arrangement()
    return planner.place(tune, arr, 60, song.loop_length(tune))


def _scale(tmp_path, pitches, name="scale"):
    notes = [(i / 2, p, 0.4) for i, p in enumerate(pitches)]
    return write_midi(tmp_path / f"{name}.mid", [notes])


def test_a_small_machine_bends_into_an_arc_facing_the_camera(tmp_path):
    pitches = [60, 62, 62, 64, 65, 65, 67, 69, 71, 72, 72, 74, 76]  # repeats a marble can chain
    stage, plan = _place(
        write_midi(tmp_path / "arc.mid", [[(i / 2, p, 0.4) for i, p in enumerate(pitches)]], bpm=90)
    )
    width = stage.x_max - stage.x_min
    assert stage.arc_depth == pytest.approx(layout.ARC_PER_WIDTH * width, abs=1e-6)
    row = sorted(stage.elements.values(), key=lambda e: e.x)
    ys = np.array([e.y for e in row])
    assert np.allclose(ys, [stage.arc_y(e.x) for e in row], atol=1e-6)
    assert ys[0] > ys[len(ys) // 2] < ys[-1]  # the ends nearer the camera (+y) than the middle
    assert ys[0] == pytest.approx(ys[-1], rel=0.05)  # symmetric about the middle
    assert ys.max() <= stage.arc_depth + 1e-9 and ys.min() >= 0.0
    for m in plan.marbles:  # each marble leaves its own column's launcher, its column shifted as one
        el = m.hits[0].element
        assert m.launch[1] == pytest.approx(layout.LAUNCH_Y + el.column_y)
        assert abs(m.hits[0].point[1] - el.y) + plan.radius <= el.length / 2 + 1e-9  # on its bar
    assert stage.twins and all(
        t.y == pytest.approx(t.column_y + layout.TWIN_Y) and t.column_y == stage.elements[k].column_y
        for k, t in stage.twins.items()
    )  # a twin stands TWIN_Y in front of its own bar, wherever the arc put it
    assert any(len(m.hits) == 2 for m in plan.marbles)  # chains still land on the twins
    assert plan.min_distance() >= 2 * plan.radius


def test_the_arc_deepens_with_the_elements_the_song_needs(tmp_path):
    few, _ = _place(_scale(tmp_path, [60, 64, 67], "few"))
    many, _ = _place(_scale(tmp_path, list(range(55, 80)), "many"))
    assert len(many.elements) > len(few.elements)
    assert many.arc_depth > few.arc_depth > 0.0


def test_a_row_too_wide_for_one_view_stays_straight(tmp_path, monkeypatch):
    """Cut into tiers (layout.py), each tier a straight row; left on one row (MAX_TIERS 1), straight too."""
    runs = [[(18 * k + i / 4, 36 + i, 0.25) for i in range(72)] for k in range(4)]
    tracks = {"1": "marimba", "2": "vibraphone", "3": "glockenspiel", "4": "strings"}
    path = write_midi(tmp_path / "wide.mid", runs, bpm=100)
    arr = arrangement.Arrangement(tracks=tracks, marble_radius=0.02)
    stage, _ = _place(path, arr)
    assert stage.tiers == layout.MAX_TIERS and stage.arc_depth == 0.0
    for e in stage.elements.values():
        assert e.y == -e.tier * layout.TIER_DY and e.top_z == e.tier * layout.TIER_DZ
    monkeypatch.setattr(layout, "MAX_TIERS", 1)
    stage, _ = _place(path, arr)
    assert stage.tiers == 1 and stage.x_max - stage.x_min > 9.0
    assert stage.arc_depth == 0.0 and all(e.y == 0.0 for e in stage.elements.values())


def test_the_arc_keeps_its_ends_inside_the_widest_view():
    """At the camera's farthest distance, a row bent to arc_depth still fits the view (with the arc's
    margin): the ends come nearer, and the view there is narrower."""
    for radius, lens, width in ((0.03, 30.0, 1.0), (0.02, 28.0, 2.0), (0.014, 50.0, 1.5)):
        depth = layout.arc_depth(width, radius, lens)
        d = camera_rig.max_distance(radius, lens)
        lo, hi = camera_rig.view_x_range(0.0, d, lens, row_y=depth)
        assert width / 2 <= hi * layout.ARC_FRAME + 1e-9 or depth == 0.0
        assert depth <= layout.ARC_MAX
