"""The lab config's backup section: the OnCalendar check against systemd's own parser, and the plan the
inventory derives from it (who backs up what, where)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from renderlab.base.share import ShareLayout
from renderlab.lab import backup_plan, host_secrets, oncalendar
from renderlab.lab.config import load
from renderlab.lab.inventory import lab_vars

ROOT = Path(__file__).resolve().parents[1]
FIXTURES = ROOT / "tests" / "fixtures" / "config"

ACCEPTED = [
    "daily",
    "weekly",
    "hourly",
    "*-*-* 02:30:00",
    "*-*-* 02:30",
    "Sun *-*-* 05:00:00",
    "Mon..Fri 22:00",
    "Mon,Wed,Fri *-*-* 01:15:00",
    "*-*-* 00/6:00:00",
    "*-*-01 03:00:00",
    "2027-01-01 00:00:00",
    "*-01,07-01 04:00",
    "Sat..Sun 12:00:30",
    "*-*-*",
]
REFUSED = [
    "every night at 2",
    "*-*-* 25:00",
    "*-*-* 02:61:00",
    "*-13-01 00:00",
    "*-*-* 2:30 Europe/Berlin",
    "Funday 02:00",
    "*-*-32",
    "*-*-* 00/0:00",
    "",
]


@pytest.mark.parametrize("value", ACCEPTED)
def test_accepted_schedules_parse(value):
    assert oncalendar.check(value) == " ".join(value.split())


@pytest.mark.parametrize("value", REFUSED)
def test_refused_schedules_say_how_to_write_one(value):
    with pytest.raises(ValueError, match=r"(not an OnCalendar schedule|empty).*systemd\.time\(7\)"):
        oncalendar.check(value)


def test_schedules_agree_with_systemd_analyze():
    """Seam: what the model accepts, the timer's own parser accepts; what it refuses (bar time zones and
    systemd's looser corners it also refuses) systemd refuses too, so a refused schedule is never a good one."""
    analyze = shutil.which("systemd-analyze")
    assert analyze, "systemd-analyze (package systemd) is needed for this seam test"
    for value in ACCEPTED:
        proc = subprocess.run([analyze, "calendar", value], capture_output=True, text=True, check=False)
        assert proc.returncode == 0, (value, proc.stderr)
    for value in REFUSED:
        if "/" in value and not value.endswith("/0:00"):
            continue  # a time zone: systemd takes it, the lab refuses it on purpose (hosts run in UTC)
        proc = subprocess.run([analyze, "calendar", value], capture_output=True, text=True, check=False)
        assert proc.returncode != 0, value


def test_the_example_plan_puts_each_data_set_on_the_host_that_holds_it():
    config = load(ROOT / "Pulumi.example.yaml")
    plan = backup_plan.plan(config)
    assert plan is not None
    share = ShareLayout(Path(config.share.path))
    by_host = {h: [s["name"] for s in sets] for h, sets in plan["sets"].items()}
    assert by_host == {
        next(iter(config.hosts_by_role("airflow"))): ["airflow_db"],
        next(iter(config.hosts_by_role("perforce"))): ["perforce"],
        next(iter(config.hosts_by_role("storage"))): ["share_runs", "share_gallery"],
    }
    storage_sets = plan["sets"][next(iter(config.hosts_by_role("storage")))]
    assert storage_sets[0]["paths"] == [str(share.runs())]
    assert storage_sets[1]["paths"] == [str(share.gallery())]
    (p4,) = plan["sets"][next(iter(config.hosts_by_role("perforce")))]
    assert p4["p4root"] == f"{config.perforce.data_root}/root"
    target = plan["target"]
    assert config.backup is not None
    assert target["address"] == config.address(config.backup.target.host)
    assert (
        target["repository"]
        == f"sftp:{backup_plan.TARGET_USER}@{target['address']}:{config.backup.target.path}"
    )
    # The assets are left out by default: the depot is their source.
    assert not any(s["name"] == "share_assets" for sets in plan["sets"].values() for s in sets)


def test_the_inventory_carries_the_plan_and_no_secret():
    config = load(ROOT / "Pulumi.example.yaml")
    v = lab_vars(config)
    assert v["renderlab_backup"] == backup_plan.plan(config)
    assert "renderlab_backup_password" not in v


def test_sftp_and_s3_targets():
    sftp = backup_plan.plan(load(FIXTURES / "valid" / "backup-sftp-target.yaml"))
    assert sftp is not None
    assert sftp["target"]["repository"] == "sftp:renderlab@nas.example.net:/volume1/backup/renderlab"
    assert sftp["target"]["port"] == 2222 and sftp["target"]["host_key"].startswith("ssh-ed25519 ")
    assert "share_assets" in [s["name"] for s in sftp["sets"]["storage"]]
    s3 = backup_plan.plan(load(FIXTURES / "valid" / "backup-s3-target.yaml"))
    assert s3 is not None
    assert s3["target"]["repository"] == "s3:https://s3.example.net/renderlab-backups/renderlab"
    assert s3["target"]["region"] == "eu-west-1"


def test_without_a_backup_section_there_is_no_plan():
    config = load(FIXTURES / "valid" / "example-compact.yaml")
    assert config.backup is None and backup_plan.plan(config) is None


def test_the_repository_password_is_a_generated_host_secret():
    assert "renderlab_backup_password" in host_secrets.SECRET_NAMES
    values = host_secrets.generate()
    assert len(values["renderlab_backup_password"]) >= 40
    # The stack's S3 key pair reaches the hosts under these names, and the check accepts them.
    checked = host_secrets.check({**values, **dict.fromkeys(host_secrets.FROM_STACK.values(), "x")}, "test")
    assert set(host_secrets.FROM_STACK.values()) <= set(checked)
