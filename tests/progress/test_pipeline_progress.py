"""The DAG's side of progress: every chunk knows the run's frame count, its render command writes the
progress record and the live page, and the plan, the chunks task and `make render` say the estimate."""

from __future__ import annotations

import io
import logging

from blender_scripts.render import build_parser
from renderlab.base.estimate import render_estimate
from renderlab.pipeline import run_plan
from renderlab.pipeline import steps as pipeline
from renderlab.pipeline.settings import Settings
from renderlab.workstation import trigger

BUILT = {"blend": "s.blend", "loop_blend": "l.blend", "frames": [1, 100], "loop_frames": [1, 60]}
LOCAL = Settings(backend="local", depot="file:///d/songs", frames_per_chunk=48, cpu="4")


def plan(**params) -> dict:
    context = {"params": {"song": "s", **params}, "run_id": "manual__2026-01-01T00:00:00+00:00"}
    return run_plan.resolve_run(context, LOCAL).xcom()


def test_render_commands_write_progress_and_the_live_page(caplog):
    p = plan(loop=True, preset="1080p60")
    with caplog.at_level(logging.INFO, logger="renderlab.pipeline.steps"):
        chunks = pipeline.chunks(p, BUILT)
    assert {c["run_frames"] for c in chunks} == {160}
    expected = render_estimate(160, "1080p60", p["samples"], 100, cores=4)
    assert f"render estimate: {expected.line()}" in caplog.text
    ns = build_parser().parse_args(pipeline.render_command(p, chunks[-1])[3:])
    assert (ns.variant, ns.run_frames, ns.title) == ("loop", 160, "s")
    assert str(ns.progress) == f"runs/{p['run_id']}/progress"
    assert str(ns.live) == f"gallery/runs/{p['run_id']}"


def test_the_plan_task_logs_the_estimate_of_a_frame_range(caplog):
    with caplog.at_level(logging.INFO, logger="renderlab.pipeline.run_plan"):
        plan(frames="1-240", preset="demo")
    assert f"render estimate: {render_estimate(240, 'demo', 32, 100, cores=4).line()}" in caplog.text


class FakeApi:
    """Airflow's answers for one run: the task instances, then the XComs the trigger reads."""

    def __init__(self, xcoms: dict):
        self.xcoms = xcoms
        self.url = "http://airflow"

    def get(self, path: str):
        if "/xcomEntries/" in path:
            task = path.split("/taskInstances/")[1].split("/", maxsplit=1)[0]
            if task not in self.xcoms:
                raise trigger.ApiError(404, "no xcom", path)
            return {"value": self.xcoms[task]}
        if path.endswith("/taskInstances?limit=1000"):
            return {"task_instances": [{"task_id": "plan_run", "state": "success"},
                                       {"task_id": "chunks", "state": "success"}]}  # fmt: skip
        return {"state": "failed"}


def test_make_render_prints_the_estimate_once_the_chunks_are_planned():
    p = plan(preset="demo", samples=64)
    chunks = pipeline.chunks(p, BUILT)
    out = io.StringIO()
    trigger.follow(FakeApi({"plan_run": p, "chunks": chunks}), "manual__x", out, poll=0.05)
    expected = render_estimate(100, "demo", 64, 100, cores=4)
    assert f"render: estimate: {expected.line()}" in out.getvalue()
    assert trigger.estimate_line(FakeApi({"plan_run": p}), "r") is None  # not planned yet
