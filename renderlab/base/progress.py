"""A render chunk's progress record on the share: written by the render entrypoint after every frame, read
by the gallery's live page.

    <share>/runs/<run_id>/progress/<variant>-<first>-<last>.json

The record is replaced whole (renderlab.base.atomic), so a reader sees the previous or the next one, never
half of one. Read back it is hostile input (anyone who can write the share can put anything there): a
record is read only as a regular file reached without a link, at most MAX_RECORD_BYTES, through the schema
below; anything else is skipped with a reason, never shown.
"""

from __future__ import annotations

import json
import math
import os
import re
import stat
from pathlib import Path
from typing import Annotated

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError, model_validator

from renderlab.base import atomic

MAX_RECORD_BYTES = 4096
MAX_RECORDS = 4096  # a run has at most 1024 render tasks per variant (renderlab.pipeline.steps.MAX_CHUNKS)
CHUNK_KEY = re.compile(r"^[a-z]{1,16}-[1-9][0-9]{0,8}-[1-9][0-9]{0,8}$")


def _finite(v: float) -> float:
    if not math.isfinite(v):
        raise ValueError("not a finite number")
    return v


Seconds = Annotated[float, Field(ge=0, le=10 * 365 * 86400), AfterValidator(_finite)]
Frame = Annotated[int, Field(ge=1, le=999_999_999)]


class ChunkProgress(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)

    variant: Annotated[str, Field(pattern=r"^[a-z]{1,16}$")]
    first: Frame
    last: Frame
    done: Annotated[int, Field(ge=0)]  # frames finished, rendered now or kept from before
    run_frames: Annotated[int, Field(ge=1, le=999_999_999)]  # every frame of the run, all chunks together
    per_frame_s: Seconds | None = None  # expected seconds for the next frame (renderlab.base.estimate)
    eta_s: Seconds | None = None
    newest_frame: Frame | None = None  # the last frame finished: its thumbnail is the live page's
    updated: Annotated[str, Field(max_length=40)]

    @model_validator(mode="after")
    def _consistent(self) -> ChunkProgress:
        if self.first > self.last or self.done > self.total:
            raise ValueError(f"frames {self.first}-{self.last} with {self.done} done is not a chunk")
        if self.newest_frame is not None and not self.first <= self.newest_frame <= self.last:
            raise ValueError(f"newest frame {self.newest_frame} is outside {self.first}-{self.last}")
        return self

    @property
    def total(self) -> int:
        return self.last - self.first + 1

    @property
    def key(self) -> str:
        return chunk_key(self.variant, self.first, self.last)


def chunk_key(variant: str, first: int, last: int) -> str:
    return f"{variant}-{first}-{last}"


def write(folder: Path, record: ChunkProgress) -> Path:
    """Replace the chunk's record in `folder` (made if missing)."""
    return atomic.write_text(folder / f"{record.key}.json", record.model_dump_json() + "\n", mode=0o644)


def read(folder: Path, warn=None) -> list[ChunkProgress]:
    """Every valid chunk record in `folder`, by variant then first frame; `warn(message)` hears each record
    left out and why. A missing folder, or one that is a link, holds none."""
    warn = warn or (lambda _m: None)
    try:
        st = os.lstat(folder)
    except OSError:
        return []
    if not stat.S_ISDIR(st.st_mode):
        warn(f"{folder} is not a folder (a link or a file); no progress is read from it")
        return []
    found = []
    names = sorted(n for n in os.listdir(folder) if n.endswith(".json") and not n.startswith("."))
    if len(names) > MAX_RECORDS:
        warn(f"{folder} holds {len(names)} records, more than {MAX_RECORDS}; only the first are read")
        names = names[:MAX_RECORDS]
    for name in names:
        record = _read_one(folder / name, warn)
        if record is None:
            continue
        if f"{record.key}.json" != name:
            warn(f"{folder / name}: names chunk {record.key}, not {name[:-5]!r}; left out")
            continue
        found.append(record)
    return sorted(found, key=lambda r: (r.variant != "main", r.variant, r.first))


def _read_one(path: Path, warn) -> ChunkProgress | None:
    if not CHUNK_KEY.fullmatch(path.name[:-5]):
        warn(f"{path}: not a chunk record's name; left out")
        return None
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except OSError as e:
        warn(f"{path}: cannot be opened as a file ({e.strerror}); left out")
        return None
    with open(fd, "rb") as f:
        if not stat.S_ISREG(os.fstat(f.fileno()).st_mode):
            warn(f"{path}: not a regular file; left out")
            return None
        data = f.read(MAX_RECORD_BYTES + 1)
    if len(data) > MAX_RECORD_BYTES:
        warn(f"{path}: larger than {MAX_RECORD_BYTES} bytes; left out")
        return None
    try:
        return ChunkProgress.model_validate(json.loads(data.decode("utf-8")))
    except (ValueError, RecursionError) as e:  # ValidationError and JSONDecodeError are ValueErrors
        reason = (
            f"{e.error_count()} schema problem(s)" if isinstance(e, ValidationError) else type(e).__name__
        )
        warn(f"{path}: not a progress record ({reason}); left out")
        return None
