"""The have-list read back from the share (DEST/.renderlab/state.json): untrusted input, schema-checked.

Anyone who can write to the share can write this file, and the fetch deletes and rewrites the files it
names. So every key must be a plain relative path that stays inside DEST (no `..`, no absolute path, no
empty or `.` segment, no NUL or backslash, never under .renderlab), and every value must have the shape the
fetch wrote. A file that fails any check is ignored as a whole: that only costs re-hashing, since every
file is then checked against its digest.
"""

from __future__ import annotations

import json
from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError

META = ".renderlab"
MAX_STATE_BYTES = 256 << 20  # a have-list of ~1M files; bigger is not something this tool wrote


def safe_relpath(rel: str) -> str:
    """`rel` if it is a normalized relative POSIX path that cannot leave its root; ValueError otherwise."""
    if not isinstance(rel, str) or not rel:
        raise ValueError("empty path")
    if "\0" in rel or "\\" in rel:
        raise ValueError(f"{rel!r}: NUL or backslash in a path")
    if rel.startswith("/"):
        raise ValueError(f"{rel!r}: absolute path")
    parts = rel.split("/")
    if any(p in ("", ".", "..") for p in parts):
        raise ValueError(f"{rel!r}: empty, '.' or '..' segment")
    if parts[0] == META:
        raise ValueError(f"{rel!r}: inside {META}")
    try:
        rel.encode("utf-8")
    except UnicodeEncodeError as e:
        raise ValueError(f"{rel!r}: not valid UTF-8") from e
    return rel


RelPath = Annotated[str, AfterValidator(safe_relpath)]
NonNegInt = Annotated[int, Field(ge=0)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)


class EntryModel(_Strict):
    size: NonNegInt
    digest: Annotated[str, Field(pattern=r"^[0-9a-f]{32,128}$")]
    stat: list[int] = Field(default_factory=list, max_length=4)


class StateModel(_Strict):
    kind: Literal["file", "p4"]
    algorithm: Literal["sha256", "md5"]
    files: dict[RelPath, EntryModel] = {}
    # rel -> [size, mtime_ns, ctime_ns, inode, digest]: the stat key of a source file and its digest
    source_cache: dict[RelPath, Annotated[list[int | str], Field(min_length=5, max_length=5)]] = {}


def read_state(data: bytes) -> tuple[StateModel | None, str | None]:
    """Parse a have-list; (state, None) when it is sound, (None, why) when it must be ignored."""
    if len(data) > MAX_STATE_BYTES:
        return None, f"larger than {MAX_STATE_BYTES >> 20} MiB"
    try:
        raw = json.loads(data)
    except (ValueError, RecursionError) as e:
        return None, f"not JSON ({type(e).__name__})"
    try:
        state = StateModel.model_validate(raw)
    except ValidationError as e:
        first = e.errors()[0]
        where = ".".join(str(x) for x in first["loc"]) or "(top)"
        return None, f"{e.error_count()} schema problem(s), first at {where}: {first['msg']}"
    for rel, row in state.source_cache.items():
        if not (all(isinstance(x, int) for x in row[:4]) and isinstance(row[4], str)):
            return None, f"source_cache.{rel}: not [size, mtime_ns, ctime_ns, inode, digest]"
    return state, None
