"""--source parsing: every accepted form, and one clear error for each malformed one."""

from __future__ import annotations

from pathlib import Path

import pytest

from renderlab.jobs.fetch.errors import UsageError
from renderlab.jobs.fetch.source import FileSource, P4Source, parse_source


@pytest.mark.parametrize(
    ("text", "port", "path", "change"),
    [
        ("p4://perforce:1666//depot/songs/demo/...@42", "perforce:1666", "//depot/songs/demo/...", 42),
        (
            "p4://ssl:10.20.0.14:1666//depot/songs/demo/...@latest",
            "ssl:10.20.0.14:1666",
            "//depot/songs/demo/...",
            None,
        ),
        ("p4://tcp:p4.lab:1666//depot/...@7", "p4.lab:1666", "//depot/...", 7),
    ],
)
def test_p4_sources(text, port, path, change):
    src = parse_source(text)
    assert src == P4Source(port=port, depot_path=path, change=change)
    assert src.ssl == port.startswith("ssl:")


def test_file_sources():
    assert parse_source("file:///srv/demo/song") == FileSource(Path("/srv/demo/song"), None)
    assert parse_source("file:///srv/demo%20x@123") == FileSource(Path("/srv/demo x"), 123)
    assert parse_source("file:///srv/demo@latest") == FileSource(Path("/srv/demo"), None)


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("http://x/y", "unknown scheme"),
        ("p4://perforce:1666//depot/songs/demo/...", "not a Perforce source"),
        ("p4://perforce//depot/songs/...@1", "not a Perforce source"),
        ("p4://perforce:99999//depot/songs/...@1", "outside 1-65535"),
        ("p4://perforce:1666//depot/songs/demo@1", "trailing /..."),
        ("p4://perforce:1666//depot/*/x/...@1", "no other wildcards"),
        ("p4://perforce:1666//depot/songs/...@0", "changelist 0"),
        ("p4://perforce:1666//depot/songs/...@head", "not a Perforce source"),
        ("file://relative/dir", "absolute path"),
    ],
)
def test_bad_sources(text, says):
    with pytest.raises(UsageError, match=says.replace("(", r"\(")):
        parse_source(text)
