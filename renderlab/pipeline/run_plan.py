"""A render run's plan: the DAG's first task resolves it once (settings snapshot, parameters, frames, share
paths) and every later task reads it. It crosses task boundaries as JSON (XCom) and is validated back into
this model by each task, so no task re-parses a parameter or rebuilds a path.
"""

from __future__ import annotations

import hashlib
import logging
import re
from pathlib import Path, PurePosixPath
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from renderlab.base.share import ShareLayout
from renderlab.pipeline.settings import Notify, Preset, Settings

log = logging.getLogger(__name__)
VARIANTS = ("main", "loop")


def run_folder_id(airflow_run_id: str) -> str:
    """A share-safe run folder name from Airflow's run id (``manual__2026-01-01T00:00:00+00:00``)."""
    safe = re.sub(r"[^A-Za-z0-9_.+-]", "-", airflow_run_id).strip("-.") or "run"
    if len(safe) > 100 or safe != airflow_run_id:
        digest = hashlib.sha256(airflow_run_id.encode()).hexdigest()[:8]
        safe = f"{safe[:100]}-{digest}"
    return safe


def share_layout() -> ShareLayout:
    """The share layout with paths relative to the share root (the Jobs' working directory)."""
    return ShareLayout(PurePosixPath("."))


class FrameRange(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    first: int = Field(ge=1)  # a song's frames are numbered from 1: frames 0-0 is no frame at all
    last: int = Field(ge=1)

    @model_validator(mode="after")
    def _ordered(self) -> FrameRange:
        if self.first > self.last:
            raise ValueError(
                f"param frames={self.first}-{self.last}: the first frame is after the last; use e.g. '1-240'"
            )
        return self

    @classmethod
    def parse(cls, text: str) -> FrameRange | None:
        """'all' -> None (the whole song); 'A-B' -> the range."""
        if text == "all":
            return None
        first, last = (int(x) for x in text.split("-"))
        return cls(first=first, last=last)


class RunPaths(BaseModel):
    """The run's folders, relative to the share root (built by the share layout only)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    assets: str
    run: str
    scene: str
    frames: dict[str, str]
    video: str
    report: str
    gallery: str  # the gallery folder (the gallery Job's --out)
    gallery_page: str  # this run's page in it


# The longest each Job may run before it is stopped (the k8s Job's activeDeadlineSeconds, the local backend's
# watchdog): a Job that hangs on hostile input ends, and its task fails with one line. A render chunk's
# bound grows with its frames, samples and resolution (RENDER_S_PER_FRAME at 32 samples, 100 %).
JOB_TIMEOUT_S = {"fetch": 2 * 3600, "build": 2 * 3600, "assemble": 3600, "validate": 1800, "gallery": 600}
RENDER_S_PER_FRAME = 120
RENDER_CHUNK_MAX_S = 24 * 3600
# Airflow stops a task this long after its Job's own bound (the Job is stopped first, and says why).
TASK_MARGIN_S = 300


def task_timeout_s(kind: str) -> int:
    """The DAG task's execution_timeout: its Job's longest bound, plus a margin."""
    return (RENDER_CHUNK_MAX_S if kind == "render" else JOB_TIMEOUT_S[kind]) + TASK_MARGIN_S


class RunPlan(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    run_id: str  # the run folder's name
    airflow_run_id: str
    song: str
    changelist: int | Literal["latest"]
    preset: Preset
    samples: int = Field(ge=1)
    resolution_percentage: int = Field(ge=1, le=100)
    frames: FrameRange | None  # None: every frame of the song
    frames_per_chunk: int = Field(ge=1)
    loop: bool
    render: bool
    notify: Notify
    settings: Settings
    paths: RunPaths
    run_folder: str  # absolute, as this Airflow worker sees the share

    @classmethod
    def of(cls, value: RunPlan | dict[str, Any]) -> RunPlan:
        """The plan from a task's XCom value (JSON) or as is."""
        return value if isinstance(value, RunPlan) else cls.model_validate(value)

    def xcom(self) -> dict[str, Any]:
        return self.model_dump(mode="json")

    def timeout_s(self, kind: str) -> int:
        """The Job's timeout, from the plan: fixed per kind, a render chunk's from its size and samples."""
        if kind != "render":
            return JOB_TIMEOUT_S[kind]
        per_frame = RENDER_S_PER_FRAME * max(1.0, self.samples / 32) * (self.resolution_percentage / 100) ** 2
        return int(min(RENDER_CHUNK_MAX_S, 600 + self.frames_per_chunk * per_frame))


# The render DAG's params in the trigger form's order (dags/render.py defines them, by section; a test keeps
# the two lists equal).
PARAM_NAMES = ("song", "changelist", "preset", "samples", "resolution_percentage", "frames", "frames_per_chunk",
               "render", "loop", "notify")  # fmt: skip


def resolve_run(context: dict, settings: Settings) -> RunPlan:
    """Resolve the run from the DAG's params and the settings: run folder, share paths, effective values."""
    params = dict(context["params"])
    # Airflow keeps conf keys that are no param: a typo ('sampels') would render with the defaults.
    unknown = sorted(set(params) - set(PARAM_NAMES))
    if unknown:
        raise ValueError(
            f"unknown param(s) {', '.join(map(repr, unknown))} in the run's conf; the render DAG takes "
            f"{', '.join(PARAM_NAMES)}"
        )
    run_id = run_folder_id(context["run_id"])
    lay = share_layout()
    song = params["song"]
    plan = RunPlan(
        run_id=run_id,
        airflow_run_id=context["run_id"],
        song=song,
        changelist=params.get("changelist", "latest"),
        preset=params.get("preset") or settings.preset,
        samples=params.get("samples") or settings.samples,
        resolution_percentage=params.get("resolution_percentage") or 100,
        frames=FrameRange.parse(params.get("frames") or "all"),
        frames_per_chunk=params.get("frames_per_chunk") or settings.frames_per_chunk,
        loop=bool(params.get("loop")),
        render=params.get("render", True) is not False,
        notify=params.get("notify") or settings.notify,
        settings=settings,
        paths=RunPaths(
            assets=str(lay.assets(song)),
            run=str(lay.run(run_id)),
            scene=str(lay.scene(run_id)),
            frames={v: str(lay.frames(run_id, v)) for v in VARIANTS},
            video=str(lay.video(run_id)),
            report=str(lay.report(run_id)),
            gallery=str(lay.gallery()),
            gallery_page=str(lay.gallery_run(run_id) / "index.html"),
        ),
        run_folder=str(Path(settings.share_root) / lay.run(run_id)),
    )
    log.info("run %s: song %s, backend %s, run folder %s", run_id, song, settings.backend, plan.run_folder)
    from renderlab.base.estimate import cores_of, render_estimate

    frames = 1 if plan.frames is None else plan.frames.last - plan.frames.first + 1
    est = render_estimate(
        frames, plan.preset, plan.samples, plan.resolution_percentage, cores_of(settings.cpu)
    )
    if (
        plan.frames is None
    ):  # the song's length is known once its scene is built (the chunks task says it all)
        log.info("render estimate: %.1f s per frame on %g cores; the frame count follows the build",
                 est.task_seconds_per_frame, est.cores)  # fmt: skip
    else:
        log.info("render estimate: %s", est.line())
    return plan
