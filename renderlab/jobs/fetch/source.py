"""Parse the --source argument: `p4://[ssl:]HOST:PORT//depot/path/...@CHANGE` or `file:///abs/dir[@CHANGE]`."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote

from .errors import UsageError

LATEST = "latest"

_P4 = re.compile(
    r"^p4://(?P<proto>ssl:|tcp:)?(?P<host>[A-Za-z0-9](?:[A-Za-z0-9.-]{0,253}[A-Za-z0-9])?):(?P<port>\d{1,5})"
    r"(?P<path>//[^@\s]+)@(?P<change>\d+|latest)$"
)
_DEPOT_PATH = re.compile(r"^//[A-Za-z0-9_.+-]+(?:/[A-Za-z0-9_.+ -]+)*/\.\.\.$")
_P4_HELP = "p4://[ssl:]HOST:PORT//depot/path/...@CHANGE (CHANGE: a changelist number or 'latest')"
_FILE_HELP = "file:///absolute/project/dir (optionally @CHANGE to pin the content version)"


@dataclass(frozen=True)
class P4Source:
    """A depot path at a changelist (`change` is an int, or None for `latest`)."""

    port: str  # P4PORT form: "ssl:host:1666" or "host:1666"
    depot_path: str  # always ends in "/..."
    change: int | None

    @property
    def ssl(self) -> bool:
        return self.port.startswith("ssl:")

    def __str__(self) -> str:
        return f"p4://{self.port}{self.depot_path}@{self.change or LATEST}"


@dataclass(frozen=True)
class FileSource:
    """A plain folder; `change` pins the expected content version (None: whatever it holds now)."""

    root: Path
    change: int | None

    def __str__(self) -> str:
        return f"file://{self.root}@{self.change or LATEST}"


def parse_source(text: str) -> P4Source | FileSource:
    """Return the typed source, or raise UsageError naming the bad part and the accepted forms."""
    text = text.strip()
    if text.startswith("p4://"):
        return _parse_p4(text)
    if text.startswith("file://"):
        return _parse_file(text)
    raise UsageError(f"--source {text!r}: unknown scheme; use {_P4_HELP} or {_FILE_HELP}")


def _parse_p4(text: str) -> P4Source:
    m = _P4.fullmatch(text)
    if not m:
        raise UsageError(f"--source {text!r} is not a Perforce source; the form is {_P4_HELP}")
    port = int(m["port"])
    if not 1 <= port <= 65535:
        raise UsageError(f"--source {text!r}: port {port} is outside 1-65535")
    path = m["path"]
    if ".." in path.removesuffix("/..."):
        raise UsageError(
            f"--source {text!r}: depot path {path!r} holds '..' before the trailing /... (a Perforce "
            "wildcard or a parent folder would widen the sync); name the project folder exactly"
        )
    if not _DEPOT_PATH.fullmatch(path):
        raise UsageError(
            f"--source {text!r}: depot path {path!r} must look like //depot/dir/... "
            "(a depot, folders, and the trailing /... wildcard; no other wildcards)"
        )
    proto = "ssl:" if m["proto"] == "ssl:" else ""
    change = None if m["change"] == LATEST else int(m["change"])
    if change == 0:
        raise UsageError(
            f"--source {text!r}: changelist 0 does not exist; use a submitted change or 'latest'"
        )
    return P4Source(port=f"{proto}{m['host']}:{port}", depot_path=path, change=change)


def _parse_file(text: str) -> FileSource:
    rest = text[len("file://") :]
    change: int | None = None
    m = re.fullmatch(r"(?P<path>.*)@(?P<change>\d+|latest)", rest)
    if m:
        rest = m["path"]
        change = None if m["change"] == LATEST else int(m["change"])
    if not rest.startswith("/"):
        raise UsageError(f"--source {text!r}: a file source needs an absolute path, e.g. {_FILE_HELP}")
    return FileSource(root=Path(unquote(rest)), change=change)
