"""The judge of the testinfra report: it sees what "at least 40 passed" could not (a whole role skipped, a check
that ran nowhere, a skip nobody named)."""

from __future__ import annotations

from tests.lab.host_checks import judge

HOSTS = {
    "storage": ["storage"],
    "perforce": ["perforce"],
    "airflow": ["airflow"],
    "control-plane": ["control_plane"],
    "worker": ["worker"],
}


def item(unit, group, host, outcome="passed", reason=""):
    return {"unit": unit, "group": group, "host": host, "outcome": outcome, "reason": reason}


def full_run(**replace) -> dict:
    report = {}
    for n in range(50):  # plenty of common passes: the old gate (>= 40) would have been satisfied by these
        for host in HOSTS:
            report[f"common::t{n}[{host}]"] = item("common", None, host)
    for unit, group, host in (
        ("samba", "storage", "storage"),
        ("perforce", "perforce", "perforce"),
        ("airflow", "airflow", "airflow"),
        ("kubernetes.TestControlPlane", "control_plane", "control-plane"),
        ("kubernetes.TestWorker", "worker", "worker"),
    ):
        report[f"{unit}::t[{host}]"] = item(unit, group, host)
        for other in HOSTS:
            if other != host:
                report[f"{unit}::t[{other}]"] = item(unit, group, other, "deselected")
    report.update(replace)
    return report


def test_a_full_run_passes():
    problems, counts = judge(full_run(), HOSTS, set())
    assert problems == []
    assert counts["samba"] == {"storage": {"passed": 1}}


def test_a_role_that_only_skipped_is_caught():
    skipped = item("samba", "storage", "storage", "skipped", "smbd is not installed")
    problems, _ = judge(full_run(**{"samba::t[storage]": skipped}), HOSTS, set())
    assert problems == [
        "samba::t[storage]: skipped without a named reason here: smbd is not installed",
        "samba: nothing passed on storage ({'skipped': 1})",
    ]


def test_p4d_may_skip_only_on_a_host_stopped_at_its_download():
    skipped = item("perforce", "perforce", "perforce", "skipped", "p4d is not installed on perforce: ...")
    report = full_run(**{"perforce::t[perforce]": skipped})
    assert judge(report, HOSTS, {"perforce"})[0] == []
    assert judge(report, HOSTS, set())[0] != []  # p4d was meant to be there: its skip counts as a failure


def test_a_check_that_ran_nowhere_is_caught():
    report = {k: v for k, v in full_run().items() if not k.startswith("airflow::")}
    report["airflow::t[storage]"] = item("airflow", "airflow", "storage", "deselected")
    assert judge(report, HOSTS, set())[0] == ["airflow: no check ran on airflow (group airflow)"]
    misspelt = {k: v for k, v in full_run().items() if not k.startswith("samba::")}
    misspelt.update({f"samba::t[{h}]": item("samba", "storag", h, "deselected") for h in HOSTS})
    assert (
        "samba: its group storag has no host in the inventory (a misspelt group?)"
        in judge(misspelt, HOSTS, set())[0]
    )


def test_a_failure_or_a_check_outside_its_group_is_caught():
    report = full_run(**{"samba::t[airflow]": item("samba", "storage", "airflow")})
    assert judge(report, HOSTS, set())[0] == ["samba ran on airflow, outside its group storage"]
    report = full_run(**{"common::t0[storage]": item("common", None, "storage", "failed")})
    assert judge(report, HOSTS, set())[0] == ["common::t0[storage]: failed"]


def test_the_p4d_checkpoint_backup_may_skip_only_where_p4d_could_not_be_installed():
    reason = "p4d is not installed on perforce (its download was not reachable): left out perforce"
    skipped = item("backup", None, "perforce", "skipped", reason)
    backups = {f"backup::t[{h}]": item("backup", None, h) for h in HOSTS}
    report = full_run(**{**backups, "backup::t[perforce]": skipped})
    assert judge(report, HOSTS, {"perforce"})[0] == []
    problems = judge(report, HOSTS, set())[0]  # p4d was meant to be there: the skip is a problem
    assert problems[0] == f"backup::t[perforce]: skipped without a named reason here: {reason}"
