"""Write files so that readers see either the old file or the complete new one (temp name, then rename).

The one atomic-write helper of the repository: the Jobs, the fetch image, the DAG's records, the inventory,
the secrets file, the rendered manifests and the local lab's state all write through it.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any


@contextlib.contextmanager
def target(path: str | Path, mode: int | None = None, temp: Path | None = None) -> Iterator[Path]:
    """Yield a temp path beside `path`; on success it is renamed over `path`, on error removed.

    `mode`: the file's permissions, set before the rename (a secrets file is never readable by others,
    not even for a moment; default 0600). `temp`: the temp file's own name, for a writer that recognises
    and cleans up the temp files a killed run of its own left behind (the fetch)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if temp is None:
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=f".tmp{path.suffix}", dir=path.parent)
    else:
        fd, tmp = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), str(temp)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        if mode is not None:
            os.chmod(tmp_path, mode)
        yield tmp_path
        os.replace(tmp_path, path)
    finally:
        tmp_path.unlink(missing_ok=True)


def write_bytes(
    path: str | Path, data: bytes, mode: int | None = None, fsync: bool = False, temp: Path | None = None
) -> Path:
    with target(path, mode, temp) as tmp, open(tmp, "wb") as f:
        f.write(data)
        if fsync:  # the share: the bytes are on the server before the name points at them
            f.flush()
            os.fsync(f.fileno())
    return Path(path)


def write_text(path: str | Path, text: str, mode: int | None = None) -> Path:
    return write_bytes(path, text.encode("utf-8"), mode)


def write_json(path: str | Path, data: object, mode: int | None = None) -> Path:
    return write_text(path, json.dumps(data, indent=2, sort_keys=True) + "\n", mode)


def write_yaml(path: str | Path, data: Any, mode: int | None = None) -> Path:
    import yaml  # not every image has it; only the YAML writers need it

    return write_text(path, yaml.safe_dump(data, sort_keys=False), mode)
