"""The container's CPU limit as render threads (renderlab/base/cpu_limit.py), over cgroup files as the kernel
writes them for v2 and v1."""

from __future__ import annotations

import pytest

from renderlab.base import cpu_limit


@pytest.mark.parametrize(
    ("text", "threads"),
    [("max 100000\n", None), ("100000 100000\n", 1), ("150000 100000\n", 2), ("400000 100000\n", 4),
     ("5000 100000\n", 1)],
)  # fmt: skip
def test_cgroup_v2_quota(tmp_path, text, threads):
    (tmp_path / "cpu.max").write_text(text)
    assert cpu_limit.threads(tmp_path) == threads


@pytest.mark.parametrize("controller", ["cpu,cpuacct", "cpu"])
@pytest.mark.parametrize(("quota", "threads"), [("-1", None), ("200000", 2), ("250000", 3)])
def test_cgroup_v1_quota(tmp_path, controller, quota, threads):
    folder = tmp_path / controller
    folder.mkdir()
    (folder / "cpu.cfs_quota_us").write_text(f"{quota}\n")
    (folder / "cpu.cfs_period_us").write_text("100000\n")
    assert cpu_limit.threads(tmp_path) == threads


def test_no_cgroup_or_garbage_is_no_limit(tmp_path):
    assert cpu_limit.threads(tmp_path) is None
    (tmp_path / "cpu.max").write_text("garbage")
    assert cpu_limit.threads(tmp_path) is None


def test_this_machine_answers_without_raising():
    got = cpu_limit.threads()
    assert got is None or got >= 1
