"""The one atomic-write helper (renderlab/base/atomic.py): all or nothing, private from the first byte."""

from __future__ import annotations

import stat

import pytest

from renderlab.base import atomic


def test_a_failed_write_leaves_the_old_file_and_no_temp(tmp_path):
    path = tmp_path / "report.json"
    atomic.write_json(path, {"v": 1})
    with pytest.raises(RuntimeError), atomic.target(path) as tmp:
        tmp.write_text('{"v": 2, "half')
        raise RuntimeError("killed mid-write")
    assert path.read_text() == '{\n  "v": 1\n}\n'
    assert [p.name for p in tmp_path.iterdir()] == ["report.json"]


def test_mode_is_set_before_the_name_appears(tmp_path, monkeypatch):
    seen = []
    real_replace = atomic.os.replace

    def replace(src, dst):
        seen.append(stat.S_IMODE(atomic.os.stat(src).st_mode))
        real_replace(src, dst)

    monkeypatch.setattr(atomic.os, "replace", replace)
    atomic.write_yaml(tmp_path / "secrets.yml", {"k": "v"}, mode=0o600)
    atomic.write_text(tmp_path / "inventory.yml", "x: 1\n", mode=0o644)
    assert seen == [0o600, 0o644]
    assert stat.S_IMODE((tmp_path / "secrets.yml").stat().st_mode) == 0o600


def test_a_named_temp_is_used_and_cleaned(tmp_path):
    temp = tmp_path / ".state.json.mine.tmp"
    atomic.write_bytes(tmp_path / "state.json", b"{}", fsync=True, temp=temp)
    assert (tmp_path / "state.json").read_bytes() == b"{}" and not temp.exists()


# Issue 28, class 6: a target that is not a regular file is refused, never replaced.


@pytest.mark.parametrize("kind", ["link-to-file", "dangling-link", "fifo", "folder", "device"])
def test_a_target_that_is_not_a_regular_file_is_refused_and_left_as_it_is(tmp_path, kind):
    import os

    victim = tmp_path / "victim.txt"
    victim.write_text("keep me")
    if kind == "device":
        # A private character device (as /dev/null), never a real one: the old code replaced its target.
        path = tmp_path / "null"
        try:
            os.mknod(path, stat.S_IFCHR | 0o666, os.makedev(1, 3))
        except PermissionError:
            pytest.skip("making a device node needs root (CAP_MKNOD)")
    else:
        path = tmp_path / "out.json"
        if kind == "link-to-file":
            path.symlink_to(victim)
        elif kind == "dangling-link":
            path.symlink_to(tmp_path / "nowhere")
        elif kind == "fifo":
            os.mkfifo(path)
        else:
            path.mkdir()
    before = os.lstat(path)
    with pytest.raises(OSError, match="not a regular file, and is never replaced") as info:
        atomic.write_json(path, {"secret": "s3cr3t"}, mode=0o600)
    assert str(path) in str(info.value)
    after = os.lstat(path)
    assert (after.st_mode, after.st_ino, after.st_rdev) == (before.st_mode, before.st_ino, before.st_rdev)
    assert victim.read_text() == "keep me"
    assert not [p for p in tmp_path.iterdir() if ".tmp" in p.name]
    assert not (tmp_path / "nowhere").exists()


def test_a_target_swapped_for_a_link_while_writing_is_refused(tmp_path):
    victim = tmp_path / "victim.txt"
    victim.write_text("keep me")
    path = tmp_path / "out.json"
    with pytest.raises(OSError, match="symbolic link"), atomic.target(path) as tmp:
        tmp.write_text("new")
        path.symlink_to(victim)
    assert path.is_symlink() and victim.read_text() == "keep me"


def test_a_link_planted_under_a_named_temp_is_not_written_through(tmp_path):
    victim = tmp_path / "victim.txt"
    victim.write_text("keep me")
    temp = tmp_path / ".state.json.mine.tmp"
    temp.symlink_to(victim)
    atomic.write_bytes(tmp_path / "state.json", b"{}", temp=temp)
    assert victim.read_text() == "keep me" and (tmp_path / "state.json").read_bytes() == b"{}"
