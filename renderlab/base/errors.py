"""The errors a command foresees, and the one table that turns an OSError on a write into a hint.

A `CommandError` is reported by `cli.guard` as one line (`PROG: error: MESSAGE`) with its own exit status;
each package subclasses it for its own failures (the fetch's `FetchError`, the content's `ContentError`).
"""

from __future__ import annotations

import errno


class CommandError(Exception):
    """A failure the command foresaw: `str()` says what failed, where and how to fix it.

    `keep_lines`: print the message as it is (a report that lists every problem, one a line), not folded
    into one line."""

    exit_code = 1
    keep_lines = False


# errno -> what it means for a write, and the fix. {place}: what is being written (the disk, the share);
# {option}: the argument that picks another place (--out, --dest).
_WRITE_HINTS: tuple[tuple[frozenset[int], str], ...] = (
    (frozenset({errno.ENOSPC, errno.EDQUOT}), "{place} is full; free space on it or pick another {option}"),
    (
        frozenset({errno.EACCES, errno.EPERM, errno.EROFS}),
        "it is not writable; mount {place} read-write or fix its owner/permissions, or pick another {option}",
    ),
    (
        frozenset({errno.ENOTDIR, errno.EEXIST}),
        "a file stands where a folder is needed; remove it or pick another {option}",
    ),
    (
        frozenset({errno.ENOENT}),
        "a folder on the way does not exist and cannot be made there; pick another {option}",
    ),
)


def write_hint(exc: OSError, place: str = "the disk", option: str = "--out") -> str:
    for codes, hint in _WRITE_HINTS:
        if exc.errno in codes:
            return hint.format(place=place, option=option)
    return f"check {place} or pick another {option}"


def write_failure(
    exc: OSError, path: object, doing: str, place: str = "the disk", option: str = "--out"
) -> str:
    """One message for an OSError on the output side: what, where, and the fix."""
    return f"cannot {doing} {path}: {exc.strerror or exc} ({write_hint(exc, place, option)})"
