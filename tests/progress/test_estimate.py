"""The render-time estimates: before the run (preset figures) and while it runs (the frames done so far)."""

from __future__ import annotations

import math

import pytest

from renderlab.base import estimate
from renderlab.base.estimate import ChunkState, chunk_eta, render_estimate, run_eta, seconds_per_frame
from renderlab.base.presets import PRESETS


def test_every_preset_carries_a_measured_cost():
    assert all(p.core_s_per_frame > 0 for p in PRESETS.values())


def test_the_plan_estimate_scales_by_frames_samples_pixels_and_cores():
    base = render_estimate(100, "1080p60", None, 100, cores=2)
    assert base.core_seconds == pytest.approx(100 * PRESETS["1080p60"].core_s_per_frame)
    assert base.task_seconds_per_frame == pytest.approx(PRESETS["1080p60"].core_s_per_frame / 2)
    assert base.wall_seconds() == pytest.approx(base.core_seconds / 2)
    assert base.wall_seconds(parallel_tasks=4) == pytest.approx(base.core_seconds / 8)
    double = render_estimate(100, "1080p60", PRESETS["1080p60"].samples * 2, 100, cores=2)
    assert double.core_seconds == pytest.approx(2 * base.core_seconds)
    half = render_estimate(100, "1080p60", None, 50, cores=2)
    assert half.core_seconds == pytest.approx(base.core_seconds / 4)
    assert "100 frames" in base.line() and "core-hours" in base.line()
    with pytest.raises(ValueError):
        render_estimate(10, "demo", None, 100, cores=0)


def test_cpu_quantities():
    assert (estimate.cores_of("2"), estimate.cores_of("1.5"), estimate.cores_of("500m")) == (2.0, 1.5, 0.5)


def test_seconds_per_frame_leaves_out_the_first_frame_and_keeps_the_newest():
    assert seconds_per_frame([]) is None
    assert seconds_per_frame([4.0]) == 4.0  # only the first: it is all there is
    assert seconds_per_frame([9.0, 2.0, 2.0]) == 2.0  # the first paid the BVH build
    times = [9.0] + [1.0] * 5 + [3.0] * estimate.ETA_WINDOW
    assert seconds_per_frame(times) == 3.0  # only the newest window
    assert seconds_per_frame([math.nan, 1.0, math.inf, 3.0]) == 3.0  # non-finite times are no times


def test_chunk_eta():
    assert chunk_eta([5.0, 2.0, 2.0], remaining=10) == 20.0
    assert chunk_eta([], remaining=10) is None
    assert chunk_eta([], remaining=0) == 0.0


def test_run_eta_counts_unreported_frames_and_running_chunks():
    # Two chunks of 10 rendering at once at 2 s/frame, 5 done each; 20 more frames wait for a task.
    running = [ChunkState(5, 10, 2.0), ChunkState(5, 10, 2.0)]
    assert run_eta(running, run_frames=40) == pytest.approx(30 * 2.0 / 2)
    # One slow chunk left: its own remainder bounds the time from below.
    tail = [ChunkState(10, 10, 1.0), ChunkState(2, 10, 4.0)]
    assert run_eta(tail, run_frames=20) == pytest.approx(8 * 4.0)
    assert run_eta([ChunkState(10, 10, 1.0)], run_frames=10) == 0.0
    assert run_eta([ChunkState(0, 10, None)], run_frames=10) is None


@pytest.mark.parametrize(
    ("seconds", "text"), [(None, "-"), (math.nan, "-"), (0.4, "0 s"), (42, "42 s"), (723, "12 min 03 s"),
                          (3900, "1 h 05 min")],
)  # fmt: skip
def test_duration(seconds, text):
    assert estimate.duration(seconds) == text
