"""Is a data set's newest snapshot as recent as its schedule allows? (The hosts' testinfra check.)

The schedule's longest gap between two runs comes from systemd's own reading of it (`systemd-analyze calendar
--iterations=N SCHEDULE` on the host, the parser the timer uses); a snapshot may be that gap plus
`backup.late_after_hours` old (the timer's randomized delay, a slow upload, a host that was off a while).
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

ITERATIONS = 12
_ELAPSE = re.compile(r"^\s*(?:Next elapse|Iter\. #\d+):\s+\w{3} (\d{4}-\d\d-\d\d \d\d:\d\d:\d\d) UTC$", re.M)


def longest_gap(analyze_output: str) -> timedelta:
    """The longest time between two consecutive elapses in `systemd-analyze calendar --iterations` output
    (run with TZ=UTC)."""
    times = [datetime.fromisoformat(t).replace(tzinfo=UTC) for t in _ELAPSE.findall(analyze_output)]
    if len(times) < 2:
        raise ValueError(
            "systemd-analyze printed fewer than two elapses; run it with --iterations and TZ=UTC"
        )
    return max(b - a for a, b in zip(times, times[1:], strict=False))


def snapshot_time(restic_time: str) -> datetime:
    """restic's snapshot time (RFC 3339 with nanoseconds) as an aware datetime."""
    m = re.fullmatch(r"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(?:\.(\d+))?(Z|[+-]\d\d:\d\d)", restic_time)
    if not m:
        raise ValueError(f"not a restic snapshot time: {restic_time!r}")
    micro = (m.group(2) or "0")[:6].ljust(6, "0")
    zone = "+00:00" if m.group(3) == "Z" else m.group(3)
    return datetime.fromisoformat(f"{m.group(1)}.{micro}{zone}")


def problem(
    name: str, newest: datetime | None, gap: timedelta, late_after_hours: int, now: datetime
) -> str | None:
    """None when fresh; else one line saying what is late, by how much, and what to run."""
    allowed = gap + timedelta(hours=late_after_hours)
    if newest is None:
        return (
            f"{name}: no snapshot at all; run `systemctl start renderlab-backup.service` and read its journal"
        )
    age = now - newest
    if age > allowed:
        return (
            f"{name}: the newest snapshot is {age.total_seconds() / 3600:.1f} h old, over the "
            f"{allowed.total_seconds() / 3600:.1f} h its schedule allows; check `systemctl status "
            "renderlab-backup.timer renderlab-backup.service`"
        )
    return None
