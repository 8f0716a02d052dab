"""The camera path (pure numpy): the establishing part shows the whole machine, a sweep where it is wider
than the view at the distance the 12 px marble rule allows; the cap holds at every key and in between."""

from __future__ import annotations

import numpy as np
import pytest

from blender_scripts import arrangement, camera_rig, layout, planner, song

from .helpers import write_midi


def _plan(path, arr=None):
    tune = song.load(path)
    arr = arr or arrangement.Arrangement()
    stage = layout.build(tune, arr)
    return tune, stage, planner.plan(tune, arr, stage, 60, song.loop_length(tune))


@pytest.fixture(scope="module")
def wide(tmp_path_factory):
    """Six octaves of chromatic pitches on four instruments: a machine about 13 m wide (bars as narrow
    as their lanes), left on one row (the layout would cut it into tiers; a row wider than MAX_TIERS tiers
    can hold is what the sweep is for)."""
    runs = [[(18 * k + i / 4, 36 + i, 0.25) for i in range(72)] for k in range(4)]
    path = write_midi(tmp_path_factory.mktemp("wide") / "wide.mid", runs, bpm=100)
    tracks = {"1": "marimba", "2": "vibraphone", "3": "glockenspiel", "4": "strings"}
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(layout, "MAX_TIERS", 1)
        return _plan(path, arrangement.Arrangement(tracks=tracks, marble_radius=0.02))


def _bezier(rig, periodic):
    """The keyed curves as Blender evaluates them (handles from camera_rig.handles), densely sampled."""
    frames = rig.times * 30.0
    s = np.linspace(0.0, 1.0, 17)[:, None]
    out = []
    for values in (rig.target, rig.location):
        axes = []
        for axis in range(3):
            v = values[:, axis]
            left, right = camera_rig.handles(frames, v, periodic)
            p0, p1, p2, p3 = v[:-1], right[:-1, 1], left[1:, 1], v[1:]
            axes.append(
                ((1 - s) ** 3 * p0 + 3 * (1 - s) ** 2 * s * p1 + 3 * (1 - s) * s**2 * p2 + s**3 * p3).ravel()
            )
        out.append(np.column_stack(axes))
    return out


def _far(dist):
    """Distance from the camera to a marble at the launchers (the farthest a marble gets)."""
    behind = [0.0, camera_rig.TARGET_Y - planner.LAUNCH_Y, camera_rig.TARGET_Z - planner.LAUNCH_Z]
    return dist + np.dot(camera_rig.VIEW_DIR, behind)


def _covered(lo, hi, x_min, x_max):
    """Whether the union of the intervals [lo_i, hi_i] contains [x_min, x_max]."""
    reach = x_min
    for a, b in sorted(zip(lo, hi, strict=True)):
        if a > reach:
            break
        reach = max(reach, b)
    return reach >= x_max


@pytest.mark.parametrize("lens", [30.0, 50.0])
def test_a_very_wide_machine_opens_on_a_sweep_that_shows_every_element_at_12px(wide, lens):
    tune, stage, plan = wide
    d_max = camera_rig.max_distance(plan.radius, lens)
    width = stage.x_max - stage.x_min
    lo, hi = camera_rig.view_x_range(0.0, d_max, lens)
    assert width > 9.0 and width > 1.8 * (hi - lo)  # no single view at the allowed distance shows it all
    rig = camera_rig.path(plan, stage, lens, start=-1.5, end=tune.end_time + 1, loop=False)
    assert rig.times[0] == -1.5  # the sweep starts with the scene (the lead-in)
    est = rig.times <= rig.establish_end
    assert 3.0 <= rig.establish_end - rig.times[0] <= 1.0 + camera_rig.SWEEP_MAX_S
    dist = np.linalg.norm(rig.location - rig.target, axis=1)
    lo, hi = camera_rig.view_x_range(rig.target[est, 0], dist[est], lens)
    assert _covered(lo, hi, stage.x_min, stage.x_max)
    assert np.ptp(rig.target[est, 0]) > 0.4 * width  # it travels along the machine
    assert dist.max() <= d_max + 1e-9
    assert camera_rig.marble_px(plan.radius, lens, _far(dist)).min() >= 12.0
    target, location = _bezier(rig, periodic=False)  # and between the keys, as Blender interpolates
    curve = np.linalg.norm(location - target, axis=1)
    assert curve.max() <= d_max + 1e-9
    assert camera_rig.marble_px(plan.radius, lens, _far(curve)).min() >= 12.0
    hw = camera_rig.half_width_per_metre(lens)  # the view stays on the machine: <= 0.4 m past either end
    x = rig.target[:, 0]
    assert np.all(x - dist * hw >= stage.x_min - 0.4 - 1e-9) and np.all(
        x + dist * hw <= stage.x_max + 0.4 + 1e-9
    )
    x = target[:, 0]  # between keys (target and distance interpolate apart), within a few centimetres
    assert np.all(x - curve * hw >= stage.x_min - 0.45) and np.all(x + curve * hw <= stage.x_max + 0.45)


def test_a_narrow_machine_keeps_a_static_establishing_view_of_all_of_it(tmp_path):
    scale = [(i / 2, p, 0.5) for i, p in enumerate([60, 62, 64, 65, 67, 69, 71, 72])]
    tune, stage, plan = _plan(write_midi(tmp_path / "scale.mid", [scale]))
    rig = camera_rig.path(plan, stage, 30.0, start=-1.0, end=tune.end_time + 1, loop=False)
    assert rig.establish_end == pytest.approx(-1.0 + camera_rig.ESTABLISH_S)
    est = rig.times <= rig.establish_end
    assert est.sum() >= 5 and np.ptp(rig.times[1:] - rig.times[:-1]) < 1e-9  # keys every KEY_STEP_S
    assert np.allclose(rig.target[est], rig.target[0]) and np.allclose(rig.location[est], rig.location[0])
    dist = np.linalg.norm(rig.location[0] - rig.target[0])
    lo, hi = camera_rig.view_x_range(rig.target[0, 0], dist, 30.0)
    assert lo < stage.x_min and hi > stage.x_max
    assert dist <= camera_rig.max_distance(plan.radius, 30.0)


def test_the_loop_path_is_periodic_on_a_wide_machine(wide):
    _, stage, plan = wide
    rig = camera_rig.path(plan, stage, 30.0, start=0.0, end=plan.period, loop=True)
    assert rig.times[0] == 0.0 and rig.times[-1] == pytest.approx(plan.period)
    assert np.ptp(np.diff(rig.times)) < 1e-9 and np.diff(rig.times)[0] <= camera_rig.KEY_STEP_S
    assert np.allclose(rig.location[0], rig.location[-1]) and np.allclose(rig.target[0], rig.target[-1])
    assert np.ptp(rig.target[:, 0]) > 1.0  # it follows the music round the loop
    frames = rig.times * 30.0
    step = frames[1] - frames[0]
    around = np.concatenate([[frames[0] - step], frames, [frames[-1] + step]])
    moving = 0
    for values in (rig.target, rig.location):
        for axis in range(3):  # at the seam, the handles of a key with its neighbours across it: no kink
            v = values[:, axis]
            left, right = camera_rig.handles(frames, v, True)
            left_o, right_o = camera_rig.handles(around, np.concatenate([[v[-2]], v, [v[1]]]), False)
            assert np.allclose(left, left_o[1:-1]) and np.allclose(right, right_o[1:-1])
            moving += abs(right[0, 1] - v[0]) > 1e-6
    assert moving  # the camera is moving at the seam (else the check above proves little)
