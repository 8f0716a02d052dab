"""Hostile and careless input to the fetch (issue 14): what is read back from the share is untrusted, modes
are never widened, skipped symlinks are reported, odd file names and endless retries get one clear error."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import pytest

from renderlab.jobs.fetch.credentials import Credentials
from renderlab.jobs.fetch.errors import DestinationError, SourceError, UnreachableError, UsageError
from renderlab.jobs.fetch.filesync import fetch_folder
from renderlab.jobs.fetch.perforce import fetch_depot
from renderlab.jobs.fetch.progress import Reporter
from renderlab.jobs.fetch.source import FileSource, P4Source, parse_source
from renderlab.jobs.fetch.workspace import META, STATE

from .conftest import project_files, run_cli, write_tree
from .depots import FakeDepot

QUIET = Reporter(quiet=True)


def fetch(src: Path, dest: Path, **kw):
    return fetch_folder(FileSource(src, None), dest, QUIET, **kw)


def _poison_state(dest: Path, extra_files: dict) -> None:
    path = dest / META / STATE
    doc = json.loads(path.read_text())
    doc["files"].update(extra_files)
    path.write_text(json.dumps(doc))


def test_state_keys_outside_dest_never_delete_anything(tmp_path: Path, dest: Path):
    src = tmp_path / "src"
    write_tree(src, project_files())
    fetch(src, dest)
    victim_rel = tmp_path / "victim-rel"
    victim_abs = tmp_path / "victim-abs"
    victim_rel.write_text("keep me")
    victim_abs.write_text("keep me too")
    depth = len(dest.relative_to(tmp_path).parts)
    entry = {"size": 7, "digest": "0" * 64, "stat": []}
    _poison_state(dest, {"../" * depth + "victim-rel": entry, str(victim_abs): entry})
    again = run_cli("--source", f"file://{src}", "--dest", str(dest), "--quiet")
    assert again.returncode == 0, again.stderr
    assert victim_rel.read_text() == "keep me"
    assert victim_abs.read_text() == "keep me too"
    assert json.loads(again.stdout.splitlines()[-1])["files_removed"] == 0


def test_state_key_through_a_symlinked_folder_never_deletes_outside(tmp_path: Path, dest: Path):
    src = tmp_path / "src"
    write_tree(src, project_files())
    fetch(src, dest)
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "victim").write_text("keep")
    (dest / "escape").symlink_to(outside)
    _poison_state(dest, {"escape/victim": {"size": 4, "digest": "0" * 64, "stat": []}})
    fetch(src, dest)
    assert (outside / "victim").read_text() == "keep"


@pytest.mark.parametrize(
    "state",
    [
        b"\xff\xfe not json",
        b"[1, 2, 3]",
        b'{"kind": "file", "algorithm": "sha256", "files": {"a": {"size": "big", "digest": 3}}}',
        b'{"kind": "file", "algorithm": "sha256", "files": {"a": {"sise": 1}}, "source_cache": 7}',
        b'{"kind": "file", "algorithm": "sha256", "files": [], "source_cache": {"x": "y"}}',
        b'{"kind": "file", "algorithm": "sha256", "files": {"": {"size": 1, "digest": "d", "stat": []}}}',
    ],
    ids=["binary", "list", "wrong-types", "unknown-keys", "wrong-shapes", "empty-path"],
)
def test_a_damaged_state_only_costs_rehashing(tmp_path: Path, dest: Path, state: bytes):
    src = tmp_path / "src"
    write_tree(src, project_files())
    first = fetch(src, dest)
    (dest / META / STATE).write_bytes(state)
    again = run_cli("--source", f"file://{src}", "--dest", str(dest), "--quiet")
    assert again.returncode == 0, again.stderr
    assert "Traceback" not in again.stderr
    r = json.loads(again.stdout.splitlines()[-1])
    assert (r["changelist"], r["files_transferred"]) == (first.changelist, 0)


def test_private_source_files_stay_private_and_modes_are_kept(tmp_path: Path, dest: Path):
    src = tmp_path / "src"
    write_tree(src, {"secret/key.pem": b"private", "tools/run.sh": b"#!/bin/sh\n", "song.mid": b"MThd"})
    os.chmod(src / "secret/key.pem", 0o600)
    os.chmod(src / "tools/run.sh", 0o750)
    os.chmod(src / "song.mid", 0o644)
    old = os.umask(0)
    try:
        fetch(src, dest)
    finally:
        os.umask(old)
    modes = {
        r: stat.S_IMODE((dest / r).stat().st_mode) for r in ("secret/key.pem", "tools/run.sh", "song.mid")
    }
    assert modes == {"secret/key.pem": 0o600, "tools/run.sh": 0o750, "song.mid": 0o644}
    # A later chmod at the source reaches the copy without a re-transfer; it is never widened beyond it.
    os.chmod(src / "song.mid", 0o600)
    r = fetch(src, dest)
    assert r.files_transferred == 0
    assert stat.S_IMODE((dest / "song.mid").stat().st_mode) == 0o600


def test_symlinks_are_skipped_and_reported(tmp_path: Path, dest: Path):
    src = tmp_path / "src"
    write_tree(src, {"song.mid": b"MThd", "audio/kick.wav": b"RIFF"})
    (src / "audio/link.wav").symlink_to(src / "audio/kick.wav")
    (src / "outside").symlink_to("/etc")
    res = run_cli("--source", f"file://{src}", "--dest", str(dest), "--quiet")
    assert res.returncode == 0, res.stderr
    r = json.loads(res.stdout.splitlines()[-1])
    assert r["skipped_symlinks"] == ["audio/link.wav", "outside"]
    assert r["files_total"] == 2
    assert not (dest / "outside").exists()


def test_file_names_that_are_not_utf8_get_one_clear_error(tmp_path: Path, dest: Path):
    src = tmp_path / "src"
    write_tree(src, {"song.mid": b"MThd"})
    with open(os.path.join(os.fsencode(src), b"bad\xffname.wav"), "wb") as f:
        f.write(b"RIFF")
    res = run_cli("--source", f"file://{src}", "--dest", str(dest), "--quiet")
    assert res.returncode == SourceError.exit_code, res.stderr
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1, res.stderr
    assert "not valid UTF-8" in lines[0] and "bad\\xffname.wav" in lines[0]


def test_retries_stop_at_the_total_deadline(dest: Path):
    depot = FakeDepot()
    depot.server.down = True
    clock = [0.0]
    sleeps: list[float] = []

    def sleep(s: float) -> None:
        sleeps.append(s)
        clock[0] += s

    src = P4Source(port=depot.port, depot_path="//depot/songs/demo/...", change=None)
    from renderlab.jobs.fetch.credentials import Credentials

    with pytest.raises(UnreachableError, match=r"--retry-deadline of 60 s"):
        fetch_depot(
            src, dest, Credentials(depot.user, depot.password), QUIET, retries=1000, p4_factory=depot.p4_factory,
            sleep=sleep, clock=lambda: clock[0], deadline_s=60.0,
        )  # fmt: skip
    assert clock[0] <= 60.0
    assert sum(sleeps) <= 60.0 and len(sleeps) < 10
    depot.close()


def test_retry_deadline_is_a_cli_option_with_a_bound():
    res = run_cli("--source", "p4://127.0.0.1:1//depot/x/...@latest", "--dest", "/nonexistent/assets/x",
                  "--retry-deadline", "-5")  # fmt: skip
    assert res.returncode == UsageError.exit_code
    assert len(res.stderr.strip().splitlines()) == 1 and "--retry-deadline" in res.stderr


@pytest.mark.parametrize(
    "text",
    [
        "p4://h:1666//depot/songs/.../...@1",
        "p4://h:1666//depot/songs/a...b/...@1",
        "p4://h:1666//depot/songs/../secret/...@1",
        "p4://h:1666//depot/songs/a..b/...@1",
        "p4://h:1666//depot/songs/%%1/...@1",
        "p4://h:1666//depot/songs/*/...@1",
    ],
)
def test_depot_paths_with_wildcards_or_dotdot_are_refused(text: str):
    with pytest.raises(UsageError, match="wildcard|\\.\\."):
        parse_source(text)


# Issue 28, class 1: links at or above --dest. Every folder the fetch writes, locks or deletes in must be
# the real destination; a link there (or a source that really holds the destination) is one line, exit != 0.


def _outside(tmp_path: Path) -> Path:
    out = tmp_path / "outside"
    out.mkdir()
    (out / "keep.txt").write_text("keep me")
    return out


def _untouched(out: Path) -> None:
    assert sorted(p.name for p in out.iterdir()) == ["keep.txt"]
    assert (out / "keep.txt").read_text() == "keep me"


def _refused_one_line(res, *words: str) -> None:
    assert res.returncode not in (0, 70), res.stderr
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("fetch: error: "), res.stderr
    for w in words:
        assert w in lines[0], lines[0]
    assert res.stdout == ""


@pytest.mark.parametrize("where", ["dest", "meta", "assets"])
def test_a_link_at_or_above_dest_is_refused(tmp_path: Path, share: Path, dest: Path, where: str):
    src = tmp_path / "src"
    write_tree(src, project_files())
    out = _outside(tmp_path)
    if where == "dest":
        dest.symlink_to(out)
    elif where == "meta":
        dest.mkdir()
        (dest / META).symlink_to(out)
    else:
        (share / "assets").rmdir()
        (share / "assets").symlink_to(out)
    res = run_cli("--source", f"file://{src}", "--dest", str(dest), "--quiet")
    _refused_one_line(res, "symbolic link")
    _untouched(out)


def test_a_link_at_dest_is_refused_for_perforce_too(tmp_path: Path, dest: Path):
    out = _outside(tmp_path)
    dest.symlink_to(out)
    depot = FakeDepot()
    try:
        depot.submit({"//depot/song/a.txt": b"a"})
        with pytest.raises(DestinationError, match="symbolic link"):
            fetch_depot(
                P4Source(depot.port, "//depot/song/...", None), dest, Credentials(depot.user, depot.password),
                QUIET, p4_factory=depot.p4_factory,
            )  # fmt: skip
    finally:
        depot.close()
    _untouched(out)


def test_a_link_at_dest_with_a_forged_state_deletes_nothing_outside(tmp_path: Path, share: Path):
    # The worst case from the issue: the have-list inside the linked folder names the victim's files.
    src = tmp_path / "src"
    write_tree(src, project_files())
    out = _outside(tmp_path)
    (out / META).mkdir()
    entry = {"size": 7, "digest": "0" * 64, "stat": []}
    (out / META / STATE).write_text(
        json.dumps({"kind": "file", "algorithm": "sha256", "files": {"keep.txt": entry}})
    )
    (share / "assets" / "song").symlink_to(out)
    res = run_cli("--source", f"file://{src}", "--dest", str(share / "assets" / "song"), "--quiet")
    _refused_one_line(res, "symbolic link")
    assert (out / "keep.txt").read_text() == "keep me"
    assert sorted(p.name for p in out.iterdir()) == [META, "keep.txt"]


def test_the_lock_and_state_are_never_followed(tmp_path: Path, dest: Path):
    src = tmp_path / "src"
    write_tree(src, project_files())
    fetch(src, dest)
    out = _outside(tmp_path)
    (dest / META / "lock").unlink()
    (dest / META / "lock").symlink_to(out / "keep.txt")
    res = run_cli("--source", f"file://{src}", "--dest", str(dest), "--quiet")
    assert res.returncode == 6 and len(res.stderr.strip().splitlines()) == 1, res.stderr
    _untouched(out)


def test_a_dest_folder_swapped_for_a_link_mid_run_stops_the_run(tmp_path: Path, dest: Path):
    src = tmp_path / "src"
    write_tree(src, project_files())
    out = _outside(tmp_path)
    moved = tmp_path / "moved"

    def swap(_rel: str) -> None:
        if not dest.is_symlink():
            dest.rename(moved)
            dest.symlink_to(out)

    with pytest.raises(DestinationError, match="symbolic link|replaced while the fetch ran"):
        fetch(src, dest, after_each_file=swap)
    _untouched(out)


@pytest.mark.parametrize("how", ["source-holds-dest", "dest-inside-source"])
def test_a_source_reached_through_a_link_that_holds_dest_is_refused(tmp_path: Path, share: Path, how: str):
    dest = share / "assets" / "song"
    if how == "source-holds-dest":
        write_tree(share / "assets", {"other/x.bin": b"x"})
        via = tmp_path / "via"
        via.symlink_to(share)  # --source file://.../via is the share itself: it holds --dest
        source = via
    else:
        source = tmp_path / "src"
        write_tree(source, project_files())
        (tmp_path / "share2").mkdir()
        dest = tmp_path / "share2" / "assets"
        dest.symlink_to(source)  # --dest's parent is a link into the source
        dest = dest / "song"
    res = run_cli("--source", f"file://{source}", "--dest", str(dest), "--quiet")
    _refused_one_line(res, "overlap")
    assert res.returncode == 2
    assert not (share / "assets" / "song").exists()
    assert not (tmp_path / "src" / "song").exists()
