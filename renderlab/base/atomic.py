"""Write files so that readers see either the old file or the complete new one (temp name, then rename).

The one atomic-write helper of the repository: the Jobs, the fetch image, the DAG's records, the inventory,
the secrets file, the rendered manifests and the local lab's state all write through it.

Only a regular file (or nothing) is ever replaced: a target that is a link, a device such as /dev/stdout, a
FIFO, a socket or a folder is refused with an OSError naming what it is, checked before the temp file is
made and again just before the rename. Renaming over it would put the bytes (often secrets) in a new
regular file where the link or device was, and break whatever it served.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import stat
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

_KINDS = {
    stat.S_IFLNK: "a symbolic link",
    stat.S_IFCHR: "a character device",
    stat.S_IFBLK: "a block device",
    stat.S_IFIFO: "a FIFO",
    stat.S_IFSOCK: "a socket",
    stat.S_IFDIR: "a folder",
}


def refuse_non_regular(path: str | Path) -> None:
    """OSError unless `path` is missing or a regular file (never followed: a link is refused as a link)."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return
    if not stat.S_ISREG(st.st_mode):
        kind = _KINDS.get(stat.S_IFMT(st.st_mode), "not a regular file")
        raise OSError(
            errno.EINVAL,
            f"it is {kind}, not a regular file, and is never replaced; give the path of a regular file",
            str(path),
        )


@contextlib.contextmanager
def target(path: str | Path, mode: int | None = None, temp: Path | None = None) -> Iterator[Path]:
    """Yield a temp path beside `path`; on success it is renamed over `path`, on error removed.

    `mode`: the file's permissions, set before the rename (a secrets file is never readable by others,
    not even for a moment; default 0600). `temp`: the temp file's own name, for a writer that recognises
    and cleans up the temp files a killed run of its own left behind (the fetch)."""
    path = Path(path)
    refuse_non_regular(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if temp is None:
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=f".tmp{path.suffix}", dir=path.parent)
    else:
        # A link planted under the temp name is removed, never written through.
        Path(temp).unlink(missing_ok=True)
        fd, tmp = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600), str(temp)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        if mode is not None:
            os.chmod(tmp_path, mode)
        yield tmp_path
        refuse_non_regular(path)  # again: it may have been swapped while the temp file was written
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
