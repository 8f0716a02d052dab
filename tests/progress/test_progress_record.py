"""The render chunks' progress records: written whole, read back as hostile input (the share is writable)."""

from __future__ import annotations

import os

import pytest
from pydantic import ValidationError

from renderlab.base import progress
from renderlab.base.progress import ChunkProgress


def record(first=1, last=10, done=3, **kw) -> ChunkProgress:
    values = {
        "variant": "main",
        "first": first,
        "last": last,
        "done": done,
        "run_frames": 20,
        "per_frame_s": 2.5,
        "eta_s": 17.5,
        "newest_frame": first + done - 1 if done else None,
        "updated": "2026-01-01T00:00:00Z",
    }
    return ChunkProgress(**(values | kw))  # fmt: skip


def test_a_record_is_written_whole_and_read_back(tmp_path):
    path = progress.write(tmp_path, record())
    assert path.name == "main-1-10.json" and not [p for p in tmp_path.iterdir() if p.name.startswith(".")]
    progress.write(tmp_path, record(first=11, last=20, done=1, variant="main"))
    progress.write(tmp_path, record(done=4))  # replaced, not appended
    got = progress.read(tmp_path)
    assert [(r.first, r.done) for r in got] == [(1, 4), (11, 1)]


def test_the_schema_refuses_what_is_no_chunk():
    with pytest.raises(ValidationError):
        record(done=11)  # more done than the chunk holds
    with pytest.raises(ValidationError):
        record(newest_frame=40)
    with pytest.raises(ValidationError):
        record(variant="../x")


@pytest.mark.parametrize(
    ("name", "content"),
    [
        ("main-1-10.json", b"{not json"),
        ("main-1-10.json", b'{"variant": "main", "first": 1, "last": 10, "done": 2, "run_frames": 20, '
                           b'"per_frame_s": NaN, "updated": "x"}'),
        ("main-1-10.json", b'{"variant": "main", "first": 1, "last": 10, "done": "2", "run_frames": 20, '
                           b'"updated": "x"}'),
        ("main-1-10.json", b'{"variant": "main", "first": 1, "last": 10, "done": 2, "run_frames": 20, '
                           b'"updated": "x", "extra": 1}'),
        ("main-1-10.json", b'{"variant": "main", "first": 1, "last": 10, "done": 2, "run_frames": 20, '
                           b'"updated": "' + b"x" * 5000 + b'"}'),  # over the size bound
        ("main-1-10.json", b"[" * 100000),
        ("main-2-10.json", record().model_dump_json().encode()),  # names another chunk
        ("Main-1-10.json", b"{}"),  # not a chunk key
    ],
)  # fmt: skip
def test_hostile_records_are_left_out_with_a_reason(tmp_path, name, content):
    progress.write(tmp_path, record(first=11, last=20, done=2))
    (tmp_path / name).write_bytes(content)
    warnings: list[str] = []
    got = progress.read(tmp_path, warn=warnings.append)
    assert [r.first for r in got] == [11]
    assert len(warnings) == 1 and name in warnings[0]


def test_links_are_never_followed(tmp_path):
    secret = tmp_path / "elsewhere.json"
    secret.write_text(record().model_dump_json())
    folder = tmp_path / "progress"
    folder.mkdir()
    os.symlink(secret, folder / "main-1-10.json")
    warnings: list[str] = []
    assert progress.read(folder, warn=warnings.append) == [] and warnings
    os.symlink(folder, tmp_path / "linked")
    assert progress.read(tmp_path / "linked", warn=warnings.append) == []
    assert progress.read(tmp_path / "missing") == []
