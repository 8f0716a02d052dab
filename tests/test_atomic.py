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
