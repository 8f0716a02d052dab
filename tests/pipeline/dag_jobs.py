"""Drive every task of the render DAG with a recording backend: the Jobs it would submit, no cluster."""

from __future__ import annotations

from unittest import mock

from renderlab.pipeline import run_plan
from renderlab.pipeline import settings as settings_mod
from renderlab.pipeline import steps as pipeline
from renderlab.pipeline.jobspec import JobResult, JobSpec
from renderlab.pipeline.settings import Settings


class Recorder:
    """A backend that records the specs the DAG's tasks submit and answers with contract-shaped results."""

    def __init__(self, results):
        self.specs: list[JobSpec] = []
        self.results = results

    def run(self, spec, log, context=None):
        self.specs.append(spec)
        return JobResult(name=spec.name, exit_code=0, result=self.results(spec), seconds=1.0)


def _arg(spec: JobSpec, flag: str) -> str:
    return spec.command[spec.command.index(flag) + 1]


def _results(spec: JobSpec) -> dict:
    """What each entrypoint answers, shaped by the Job's own arguments (the build's --out and --fps)."""
    if spec.name == "build":
        scene = _arg(spec, "--out")
        return {
            "blend": f"{scene}/song.blend",
            "loop_blend": f"{scene}/song_loop.blend",
            "wav": f"{scene}/song.wav",
            "loop_wav": f"{scene}/song_loop.wav",
            "report": f"{scene}/report.json",
            "notes": 10,
            "frames": [1, 100],
            "loop_frames": [1, 60],
            "fps": int(_arg(spec, "--fps")),
            "duration_s": 100 / int(_arg(spec, "--fps")),
        }
    if spec.name.startswith("assemble"):
        return {"video": _arg(spec, "--out"), "contact_sheet": _arg(spec, "--contact-sheet")}
    return {"ok": True}


def dag_specs(settings: Settings, with_plan: bool = False):
    """Drive every task of the DAG (loop on, two chunk sizes' worth of frames) and collect its Jobs."""
    context = {
        "params": {"song": "frere_groove", "changelist": 42, "loop": True, "frames_per_chunk": 48},
        "run_id": "manual__2026-01-01T00:00:00+00:00",
    }
    rec = Recorder(_results)
    with mock.patch("renderlab.pipeline.settings.load", return_value=settings), \
         mock.patch("renderlab.pipeline.backends.get", return_value=rec):  # fmt: skip
        plan = run_plan.resolve_run(context, settings_mod.load()).xcom()  # as the DAG's plan_run task
        pipeline.fetch(plan)
        built = pipeline.build(plan)
        rendered = [pipeline.render_chunk(plan, c) for c in pipeline.chunks(plan, built)]
        assembled = pipeline.assemble(plan, built, rendered)
        pipeline.validate(plan, built, assembled)
    return (rec.specs, plan) if with_plan else rec.specs
