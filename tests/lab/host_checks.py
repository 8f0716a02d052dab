"""Judge the testinfra suite's report (tests/hosts/conftest.py writes it) per role and per host, instead of
counting passes: every check unit ran on every host of its group and passed there, and a skip is accepted only
where it is named below and its thing cannot exist on that host here."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass


@dataclass(frozen=True)
class AllowedSkip:
    unit: str  # the check unit (module role, or role.Class)
    reason: str  # how the skip's reason starts
    why: str
    vendor_blocked_only: bool  # only on a host the playbook stopped at its vendor download


ALLOWED_SKIPS = (
    AllowedSkip(
        "perforce", "p4d is not installed on ", "p4d is a vendor download this machine cannot reach", True
    ),
    AllowedSkip(
        "backup",
        "p4d is not installed on ",
        "no p4d, so no checkpoint to back up; the other data sets of that host are still judged",
        True,
    ),
    AllowedSkip(
        "airflow",
        "no Kubernetes connection yet",
        "the connection needs the cluster layer, which the local lab lane does not lay",
        False,
    ),
)


def _allowed(unit: str, host: str, reason: str, blocked: set[str]) -> AllowedSkip | None:
    for allowed in ALLOWED_SKIPS:
        unit_ok = unit.startswith(allowed.unit) if allowed.unit.endswith(".") else unit == allowed.unit
        if (
            unit_ok
            and reason.startswith(allowed.reason)
            and (host in blocked or not allowed.vendor_blocked_only)
        ):
            return allowed
    return None


def judge(report: dict[str, dict], hosts: dict[str, list[str]], blocked: set[str]) -> tuple[list[str], dict]:
    """`report`: nodeid -> {unit, group, host, outcome, reason}; `hosts`: name -> its inventory groups.
    Returns (problems, counts) with counts[unit][host] = {"passed": n, "skipped": n, ...}."""
    problems: list[str] = []
    counts: dict[str, dict[str, dict[str, int]]] = defaultdict(lambda: defaultdict(lambda: defaultdict(int)))
    groups: dict[str, str | None] = {}
    for nodeid, item in sorted(report.items()):
        unit, host, outcome = item["unit"], item["host"], item["outcome"]
        groups.setdefault(unit, item["group"])
        if outcome == "deselected":
            continue
        counts[unit][host][outcome] += 1
        if outcome in ("failed", "not run", None):
            problems.append(f"{nodeid}: {outcome}")
        elif outcome == "skipped" and _allowed(unit, host, item["reason"], blocked) is None:
            problems.append(f"{nodeid}: skipped without a named reason here: {item['reason']}")
    for unit, group in sorted(groups.items()):
        if group is not None and not any(group in g for g in hosts.values()):
            problems.append(f"{unit}: its group {group} has no host in the inventory (a misspelt group?)")
        for host, host_groups in sorted(hosts.items()):
            if group is not None and group not in host_groups:
                if counts[unit].get(host):
                    problems.append(f"{unit} ran on {host}, outside its group {group}")
                continue
            c = counts[unit].get(host, {})
            if not c:
                problems.append(f"{unit}: no check ran on {host} (group {group or 'all'})")
            elif not c.get("passed") and not (host in blocked and c.get("skipped") and set(c) == {"skipped"}):
                problems.append(f"{unit}: nothing passed on {host} ({dict(c)})")
    return problems, {u: {h: dict(c) for h, c in hs.items()} for u, hs in counts.items()}


def table(counts: dict) -> list[str]:
    lines = []
    for unit, by_host in sorted(counts.items()):
        cells = ", ".join(
            f"{h} " + "/".join(f"{k} {v}" for k, v in sorted(c.items())) for h, c in sorted(by_host.items())
        )
        lines.append(f"  {unit}: {cells}")
    return lines
