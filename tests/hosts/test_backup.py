"""The backup role on the hosts that hold data: timers on, the password private, and every configured data
set's newest snapshot as recent as its schedule allows (renderlab.lab.backup_freshness). A host that holds
none backs up nothing. Perforce's set is checked only where p4d is installed (the perforce role's download)."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest

from renderlab.lab import backup_freshness as fresh

RESTIC = "/usr/local/sbin/renderlab-restic"
P4D = "/opt/perforce/sbin/p4d"


@pytest.fixture(scope="module")
def plan(lab_vars) -> dict:
    if lab_vars.get("renderlab_backup") is None:
        pytest.skip("the lab config has no backup section: nothing is backed up")
    return lab_vars["renderlab_backup"]


@pytest.fixture(scope="module")
def sets(plan, lab_vars) -> list[dict]:
    return plan["sets"].get(lab_vars["inventory_hostname"], [])


def test_a_host_without_data_runs_no_backup(host, sets):
    if sets:
        return
    assert not host.file("/etc/systemd/system/renderlab-backup.timer").exists


def test_timers_enabled_and_waiting(host, sets):
    if not sets:
        return
    for timer in ("renderlab-backup.timer", "renderlab-backup-check.timer"):
        assert host.service(timer).is_enabled and host.service(timer).is_running, timer


def test_password_and_environment_are_private(host, sets, lab_secrets):
    if not sets:
        return
    with host.sudo():
        for name in ("password", "env"):
            f = host.file(f"/etc/renderlab-backup/{name}")
            assert (f.user, f.group, f.mode) == ("root", "root", 0o600), name
        assert (
            host.file("/etc/renderlab-backup/password").content_string.strip()
            == lab_secrets["renderlab_backup_password"]
        )
        journal = host.check_output(
            "journalctl -u renderlab-backup.service --no-pager -o cat 2>/dev/null || true"
        )
    assert lab_secrets["renderlab_backup_password"] not in journal


def test_every_data_set_is_fresh(host, sets, plan, lab_vars):
    if not sets:
        return
    name = lab_vars["inventory_hostname"]
    gap = fresh.longest_gap(
        host.check_output(
            f"TZ=UTC systemd-analyze calendar --iterations={fresh.ITERATIONS} '{plan['schedule']}'"
        )
    )
    now = datetime.now(UTC)
    problems, left_out = [], []
    with host.sudo():
        for s in sets:
            if s["kind"] == "p4d_checkpoint" and not host.file(P4D).exists:
                left_out.append(s["name"])
                continue
            out = host.check_output(f"{RESTIC} snapshots --json --host {name} --tag {s['name']} --latest 1")
            snaps = json.loads(out or "[]") or []
            newest = max((fresh.snapshot_time(x["time"]) for x in snaps), default=None)
            problems.append(fresh.problem(s["name"], newest, gap, plan["late_after_hours"], now))
    assert [p for p in problems if p] == []
    if left_out:
        pytest.skip(
            f"p4d is not installed on {name} (its download was not reachable): left out {', '.join(left_out)}"
        )


def test_the_repository_verifies(host, sets):
    """The scheduled verification, run now: restic check reads its share of the data back."""
    if not sets:
        return
    with host.sudo():
        result = host.run("systemctl start renderlab-backup-check.service")
    assert result.rc == 0, result.stderr
