"""file:// sources for real: the CLI and the library on real folders (and real tmpfs mounts for full/RO shares)."""

from __future__ import annotations

import errno
import json
import os
from pathlib import Path

import pytest

from renderlab.jobs.fetch.errors import DestinationError, Interrupted, SourceError
from renderlab.jobs.fetch.filesync import content_version, fetch_folder
from renderlab.jobs.fetch.progress import Reporter
from renderlab.jobs.fetch.source import FileSource
from renderlab.jobs.fetch.workspace import hash_file

from .conftest import project_files, run_cli, tmpfs, write_tree

QUIET = Reporter(quiet=True)


def fetch(src: Path, dest: Path, **kw):
    return fetch_folder(FileSource(src, kw.pop("change", None)), dest, QUIET, **kw)


def manifests(dest: Path) -> list[Path]:
    return sorted((dest / ".renderlab").glob("manifest-*.json"))


def assert_mirror(src: Path, dest: Path) -> dict:
    """dest holds exactly src's files, and the one published manifest lists them with their digests."""
    want = {p.relative_to(src).as_posix(): p.read_bytes() for p in src.rglob("*") if p.is_file()}
    got = {
        p.relative_to(dest).as_posix(): p.read_bytes()
        for p in dest.rglob("*")
        if p.is_file() and ".renderlab" not in p.parts
    }
    assert got == want
    [only] = manifests(dest)
    doc = json.loads(only.read_text())
    assert {f["path"]: f["digest"] for f in doc["files"]} == {r: hash_file(dest / r, "sha256") for r in want}
    assert only.name == f"manifest-{doc['changelist']}.json"
    return doc


def test_cli_first_fetch_then_unchanged_refetch(tmp_path: Path, dest: Path):
    src = tmp_path / "src"
    write_tree(src, project_files())
    first = run_cli("--source", f"file://{src}", "--dest", str(dest))
    assert first.returncode == 0, first.stderr
    r1 = json.loads(first.stdout.strip().splitlines()[-1])
    assert set(r1) == {
        "changelist",
        "files_total",
        "files_transferred",
        "bytes_transferred",
        "files_removed",
        "seconds",
        "skipped_symlinks",
        "skipped_symlinks_total",
    }
    assert (r1["files_total"], r1["files_transferred"], r1["files_removed"]) == (6, 6, 0)
    assert r1["bytes_transferred"] == sum(len(b) for b in project_files().values())
    assert assert_mirror(src, dest)["changelist"] == r1["changelist"]

    again = run_cli("--source", f"file://{src}@{r1['changelist']}", "--dest", str(dest))
    assert again.returncode == 0, again.stderr
    r2 = json.loads(again.stdout.strip().splitlines()[-1])
    assert (r2["changelist"], r2["files_transferred"], r2["bytes_transferred"], r2["files_removed"]) == (
        r1["changelist"],
        0,
        0,
        0,
    )


def test_changed_and_deleted_files_and_content_version(tmp_path: Path, dest: Path):
    src = tmp_path / "src"
    write_tree(src, project_files())
    v1 = fetch(src, dest).changelist
    write_tree(
        src, {"audio/track0.wav": b"new take", "midi/part0.mid": None, "midi/new/extra.mid": b"x" * 10}
    )
    r = fetch(src, dest)
    assert (r.files_total, r.files_transferred, r.files_removed, r.bytes_transferred) == (6, 2, 1, 18)
    assert r.changelist != v1
    assert not (dest / "midi/part0.mid").exists()
    doc = assert_mirror(src, dest)
    assert doc["changelist"] == r.changelist  # the old manifest was retired
    # The version is a pure function of the content: the same files give the same number.
    write_tree(
        src,
        {
            "audio/track0.wav": project_files()["audio/track0.wav"],
            "midi/part0.mid": project_files()["midi/part0.mid"],
            "midi/new/extra.mid": None,
        },
    )
    assert fetch(src, dest).changelist == v1


def test_corrupted_destination_file_is_repaired_alone(tmp_path: Path, dest: Path):
    src = tmp_path / "src"
    write_tree(src, project_files())
    fetch(src, dest)
    (dest / "audio/track1.wav").write_bytes(b"garbage of another size")
    data = bytearray((dest / "audio/track2.wav").read_bytes())
    data[100] ^= 0xFF
    (dest / "audio/track2.wav").write_bytes(bytes(data))  # same size, new mtime
    (dest / "midi/part1.mid").unlink()
    r = fetch(src, dest)
    assert (r.files_transferred, r.files_removed) == (3, 0)
    assert_mirror(src, dest)


def test_silent_corruption_is_caught_by_full_verify(tmp_path: Path, dest: Path):
    src = tmp_path / "src"
    write_tree(src, project_files())
    fetch(src, dest)
    victim = dest / "audio/track0.wav"
    st = victim.stat()
    data = bytearray(victim.read_bytes())
    data[0] ^= 1
    with open(victim, "r+b") as f:  # same inode, same size, mtime put back: only ctime moves
        f.write(bytes(data[:1]))
    os.utime(victim, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert fetch(src, dest, verify_full=True).files_transferred == 1
    assert_mirror(src, dest)


def test_interrupted_fetch_keeps_previous_manifest_and_resumes(tmp_path: Path, dest: Path):
    src = tmp_path / "src"
    write_tree(src, project_files())
    old = fetch(src, dest).changelist
    write_tree(
        src, {f"audio/track{i}.wav": bytes([i]) * 5000 for i in range(3)} | {"midi/part0.mid": b"m" * 50}
    )
    seen: list[str] = []

    def stop_after_two(rel: str) -> None:
        seen.append(rel)
        if len(seen) == 2:
            raise Interrupted("simulated SIGTERM")

    with pytest.raises(Interrupted):
        fetch(src, dest, after_each_file=stop_after_two)
    assert [m.name for m in manifests(dest)] == [f"manifest-{old}.json"]
    (dest / "audio" / ".track2.wav.rlfetch-999.tmp").write_bytes(b"half")  # what a SIGKILL leaves behind
    r = fetch(src, dest)
    assert r.files_transferred == 2  # only the two files the interrupted run did not get to
    assert_mirror(src, dest)


def test_pinned_content_version_mismatch(tmp_path: Path, dest: Path):
    src = tmp_path / "src"
    write_tree(src, project_files())
    with pytest.raises(SourceError, match="content version"):
        fetch(src, dest, change=12345)
    assert not manifests(dest)


def test_missing_or_empty_source(tmp_path: Path, dest: Path):
    with pytest.raises(SourceError, match="does not exist"):
        fetch(tmp_path / "nope", dest)
    (tmp_path / "empty").mkdir()
    res = run_cli("--source", f"file://{tmp_path}/empty", "--dest", str(dest))
    assert res.returncode == 3
    assert "holds no files" in res.stderr
    assert res.stdout == ""


def test_dest_must_be_a_project_asset_folder(tmp_path: Path):
    (tmp_path / "src").mkdir()
    res = run_cli("--source", f"file://{tmp_path}/src", "--dest", str(tmp_path / "elsewhere"))
    assert res.returncode == 6
    assert "<share>/assets/<project>" in res.stderr


def test_full_share_is_a_clear_error(tmp_path: Path):
    src = tmp_path / "src"
    write_tree(src, project_files(n=4, size=700_000))
    with tmpfs(tmp_path / "share", "1m") as share:
        res = run_cli("--source", f"file://{src}", "--dest", f"{share}/assets/song")
        assert res.returncode == 6, res.stderr
        assert "MB free but this fetch needs" in res.stderr
        assert not list((share / "assets/song").glob("**/*.wav"))
        # Space taken by another writer mid-fetch: the next copy hits a real ENOSPC.
        small = tmp_path / "small"
        write_tree(small, {"a.wav": b"a" * 300_000, "b.wav": b"b" * 300_000})

        def fill_share(_rel: str) -> None:
            fd = os.open(share / "filler", os.O_WRONLY | os.O_CREAT)
            try:
                while os.write(fd, b"\0" * 65536):
                    pass
            except OSError as e:
                assert e.errno == errno.ENOSPC
            finally:
                os.close(fd)

        with pytest.raises(DestinationError, match="share is full"):
            fetch(small, share / "assets" / "other", after_each_file=fill_share)
        assert not list((share / "assets/other").rglob("*.tmp"))
        assert not manifests(share / "assets/other")


def test_read_only_share_is_a_clear_error(tmp_path: Path):
    src = tmp_path / "src"
    write_tree(src, {"a.bin": b"a"})
    with tmpfs(tmp_path / "share", "1m", readonly=True) as share:
        res = run_cli("--source", f"file://{src}", "--dest", f"{share}/assets/song")
    assert res.returncode == 6
    assert "Read-only file system" in res.stderr
    assert "mount the share read-write" in res.stderr


def test_content_version_is_order_independent():
    from renderlab.jobs.fetch.filesync import SourceFile

    a, b = SourceFile("a", 1, "00"), SourceFile("b", 2, "11")
    assert content_version([a, b]) == content_version([b, a]) != content_version([a])


def test_unchanged_refetch_writes_nothing(tmp_path: Path, dest: Path):
    src = tmp_path / "src"
    write_tree(src, project_files())
    fetch(src, dest)
    meta = dest / ".renderlab"
    before = {p.name: p.stat().st_mtime_ns for p in meta.iterdir()}
    files_before = {p: p.stat().st_ino for p in dest.rglob("*.wav")}
    assert fetch(src, dest).files_transferred == 0
    assert {p.name: p.stat().st_mtime_ns for p in meta.iterdir()} == before
    assert {p: p.stat().st_ino for p in dest.rglob("*.wav")} == files_before


def test_concurrent_fetches_of_one_project_take_turns(tmp_path: Path, dest: Path):
    import fcntl
    import threading

    src = tmp_path / "src"
    write_tree(src, project_files())
    fetch(src, dest)
    fd = os.open(dest / ".renderlab" / "lock", os.O_RDWR)
    fcntl.flock(fd, fcntl.LOCK_EX)  # another fetch is running
    try:
        with pytest.raises(DestinationError, match="still holds"):
            fetch(src, dest, lock_timeout_s=0.3)
        threading.Timer(0.5, fcntl.flock, (fd, fcntl.LOCK_UN)).start()  # ... and finishes a moment later
        r = fetch(src, dest, lock_timeout_s=30)
    finally:
        os.close(fd)
    assert r.files_transferred == 0


def test_sigterm_exits_130_and_keeps_the_manifest(tmp_path: Path, dest: Path):
    import fcntl
    import signal
    import subprocess
    import sys

    from .conftest import REPO

    src = tmp_path / "src"
    write_tree(src, project_files())
    old = fetch(src, dest).changelist
    write_tree(src, {"audio/track0.wav": b"changed"})
    fd = os.open(dest / ".renderlab" / "lock", os.O_RDWR)
    fcntl.flock(fd, fcntl.LOCK_EX)  # park the CLI on the lock so the signal lands mid-fetch, every time
    try:
        proc = subprocess.Popen(
            [sys.executable, "-m", "renderlab.jobs.fetch", "--source", f"file://{src}", "--dest", str(dest)],
            cwd=REPO,
            env={**os.environ, "PYTHONPATH": str(REPO)},
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        assert "waiting for it" in proc.stderr.readline()
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=30)
    finally:
        os.close(fd)
    assert proc.returncode == 130
    assert "interrupted by signal SIGTERM" in err and out == ""
    assert [m.name for m in manifests(dest)] == [f"manifest-{old}.json"]
    assert fetch(src, dest).files_transferred == 1


def test_overlapping_source_and_dest_are_refused(share: Path):
    (share / "assets/song").mkdir(parents=True)
    res = run_cli("--source", f"file://{share}", "--dest", str(share / "assets/song"))
    assert res.returncode == 2
    assert "overlap" in res.stderr


def test_progress_lines_on_stderr(tmp_path: Path, dest: Path, capsys):
    src = tmp_path / "src"
    write_tree(src, project_files())
    fetch_folder(FileSource(src, None), dest, Reporter(interval_s=0))
    err = capsys.readouterr().err
    assert "fetch: hashing source:" in err and "fetch: transferring:" in err and "fetch: verifying:" in err
    assert "6 of 6 files to transfer" in err
