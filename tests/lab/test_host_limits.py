"""The lab raises this machine's inotify instance limit for its kubelets, never lowers it, and when it may
not, says which command does it."""

from __future__ import annotations

import pytest

from renderlab.workstation.nspawn_lab.host_limits import ensure_inotify_instances
from renderlab.workstation.nspawn_lab.options import LabError


def test_a_low_limit_is_raised_and_said(tmp_path):
    limit, said = tmp_path / "max_user_instances", []
    limit.write_text("128\n")
    assert ensure_inotify_instances(said.append, limit) == 128
    assert limit.read_text() == "512\n"
    assert said == ["raised fs.inotify.max_user_instances from 128 to 512 (the nodes' kubelets need them)"]


def test_a_higher_limit_is_left_alone(tmp_path):
    limit, said = tmp_path / "max_user_instances", []
    limit.write_text("8192\n")
    assert ensure_inotify_instances(said.append, limit) is None
    assert limit.read_text() == "8192\n" and said == []


def test_a_limit_that_may_not_be_raised_names_the_command(tmp_path, monkeypatch):
    """Root without CAP_SYS_ADMIN in the machine's namespace (a container) gets EPERM from /proc/sys."""
    limit = tmp_path / "max_user_instances"
    limit.write_text("128\n")

    def refused(self, *_a, **_k):
        raise PermissionError(1, "Operation not permitted", str(self))

    monkeypatch.setattr(type(limit), "write_text", refused)
    with pytest.raises(
        LabError, match=r"is 128, .*\(Operation not permitted\).*sysctl -w fs.inotify.max_user_instances=512"
    ):
        ensure_inotify_instances(print, limit)
