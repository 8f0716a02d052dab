"""The records the gallery reads, each through a schema: a run's validation.json and report.json, every
published run's run.json (all on the share, writable by others), and the DAG's --meta.

A share record of the wrong shape is skipped with a warning (the page shows that run without it, the index
lists the other runs): one damaged file never stops a publish. A --meta of the wrong shape is the caller's
mistake and one error. Numbers must be finite: a NaN is no duration and no timing error.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from typing import Annotated, Any

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    StrictBool,
    StrictInt,
    ValidationError,
    model_validator,
)

# A run id as the share layout names a run folder: one path segment, never '.' or '..'.
_RUN_ID = re.compile(r"[A-Za-z0-9_.:+-]{1,200}")


def run_id_ok(value: str) -> bool:
    return bool(_RUN_ID.fullmatch(value)) and value not in (".", "..")


def _run_id(value: str) -> str:
    if not run_id_ok(value):
        raise ValueError("not a run folder's name (letters, digits and _ . : + -, never '.' or '..')")
    return value


def _finite(v: float) -> float:
    if not math.isfinite(v):
        raise ValueError("not a finite number")
    return v


Num = Annotated[float, AfterValidator(_finite)]
RunId = Annotated[str, AfterValidator(_run_id)]
Shown = str | int | float | bool | None  # a value the page shows as text


class _Record(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)


class Probed(_Record):
    video_duration_s: Num | None = None
    audio_duration_s: Num | None = None


class ValidatedVariant(_Record):
    video: Probed = Probed()


class ValidatedTiming(_Record):
    threshold_ms: Num | None = None


class Validation(_Record):
    """report/validation.json (renderlab.jobs.validate)."""

    ok: StrictBool | None = None
    problems: list[Shown] = []
    variants: dict[str, ValidatedVariant] = {}
    timing: ValidatedTiming = ValidatedTiming()


class TimingNote(_Record):
    index: Shown = None
    track_name: Shown = None
    pitch: Shown = None
    element: Shown = None
    time: Num
    error: Num


class TimingReport(_Record):
    """scene/report.json (blender_scripts.build): notes are checked one by one, a bad one is left out; so is
    each strike-visibility block (`visibility_of`), so a damaged one never costs the timing plot."""

    max_timing_error_s: Num | None = None
    notes: list[dict[str, Any]] = []
    strike_visibility: Any = None
    loop_strike_visibility: Any = None


# Bounds a real build report stays far inside: a song of ~200,000 notes, a marble never wider than a 16K frame.
Count = Annotated[StrictInt, Field(ge=0, le=10_000_000)]
Seconds = Annotated[Num, Field(ge=0, le=1e7)]
Pixels = Annotated[Num, Field(ge=0, le=1e5)]


class Passage(_Record):
    """One of the worst passages (blender_scripts.visibility._passages)."""

    start_s: Seconds
    end_s: Seconds
    strikes: Count
    visible: Count

    @model_validator(mode="after")
    def _consistent(self) -> Passage:
        if self.visible > self.strikes or self.end_s < self.start_s:
            raise ValueError("more strikes visible than struck, or a passage that ends before it starts")
        return self


class StrikeVisibility(_Record):
    """report.json's strike_visibility / loop_strike_visibility (blender_scripts.visibility.summary). The
    fraction shown is recomputed from the counts, never taken from the record."""

    strikes: Count
    visible: Count
    median_px: Pixels
    min_px: Pixels | None = None
    worst_passages: Annotated[list[Passage], Field(max_length=20)] = []

    @model_validator(mode="after")
    def _consistent(self) -> StrikeVisibility:
        if self.visible > self.strikes:
            raise ValueError("more strikes visible than struck")
        return self


class MetaVariant(_Record):
    frames: Shown = None
    fps: Shown = None
    duration_s: Num | None = None


class Meta(_Record):
    """The DAG's --meta (renderlab.pipeline.steps.gallery_meta)."""

    model_config = ConfigDict(extra="allow", frozen=True)
    run_id: RunId | None = None
    song: Shown = None
    changelist: Shown = None
    started: Shown = None
    params: dict[str, Any] = {}
    durations: dict[str, Num | None] = {}
    variants: dict[str, MetaVariant] = {}


class PublishedVariant(_Record):
    duration_s: Num | None = None
    contact_sheet: Annotated[str, Field(pattern=r"^media/[^/\\]+$")] | None = None


class Published(_Record):
    """A published run's run.json (this gallery's own record, read back from the share for the index)."""

    run_id: RunId
    song: Shown = None
    started: Shown = None
    published: Shown = None
    ok: StrictBool | None = None
    variants: dict[str, PublishedVariant] = {}


class Rendering(_Record):
    """A run's live.json while it renders (renderlab.jobs.gallery_live, read back for the index)."""

    run_id: RunId
    title: Annotated[str, Field(max_length=500)] | None = None  # the song's name: the index shows it
    done: Count
    total: Count
    eta: Annotated[str, Field(max_length=64)]
    updated: Annotated[str, Field(max_length=64)] | None = None


def why(e: ValidationError) -> str:
    """The first problem of a record, in one short phrase."""
    first = e.errors()[0]
    where = ".".join(str(x) for x in first["loc"]) or "(top)"
    return f"{e.error_count()} schema problem(s), first at {where}: {first['msg']}"


def visibility_of(report: TimingReport, warn: Callable[[str], None]) -> dict[str, dict]:
    """The report's strike-visibility blocks that have the right shape, by scene ('main', 'loop'); a block of
    the wrong shape is left out with a warning."""
    out = {}
    for scene, raw in (("main", report.strike_visibility), ("loop", report.loop_strike_visibility)):
        if raw is None:
            continue
        try:
            out[scene] = StrikeVisibility.model_validate(raw).model_dump()
        except ValidationError as e:
            warn(f"the {scene} scene's strike visibility has the wrong shape ({why(e)}); left out")
    return out


def notes_of(report: TimingReport) -> list[dict[str, Any]]:
    """The report's notes that have the shape the plot needs (time and error finite numbers)."""
    out = []
    for raw in report.notes:
        try:
            out.append(TimingNote.model_validate(raw).model_dump())
        except ValidationError:
            continue
    return out
