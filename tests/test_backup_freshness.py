"""The freshness rule the hosts' testinfra check applies, over systemd-analyze's real output."""

from __future__ import annotations

import os
import subprocess
from datetime import UTC, datetime, timedelta

import pytest

from renderlab.lab import backup_freshness as fresh


def _analyze(schedule: str) -> str:
    return subprocess.run(
        ["systemd-analyze", "calendar", f"--iterations={fresh.ITERATIONS}", schedule],
        env={**os.environ, "TZ": "UTC"}, capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip


@pytest.mark.parametrize(
    ("schedule", "gap"),
    [("daily", timedelta(days=1)), ("*-*-* 02:30:00", timedelta(days=1)), ("Sun *-*-* 05:00:00", timedelta(days=7)),
     ("Mon..Fri 22:00", timedelta(days=3)), ("*-*-* 00/6:00:00", timedelta(hours=6))],
)  # fmt: skip
def test_longest_gap_is_systemds_reading_of_the_schedule(schedule, gap):
    assert fresh.longest_gap(_analyze(schedule)) == gap


def test_a_snapshot_older_than_the_schedule_allows_is_late():
    now = datetime(2026, 12, 6, 12, 0, tzinfo=UTC)
    gap = timedelta(days=1)
    assert fresh.problem("share_runs", now - timedelta(hours=29), gap, 6, now) is None
    late = fresh.problem("share_runs", now - timedelta(hours=31), gap, 6, now)
    assert late is not None and late.startswith(
        "share_runs: the newest snapshot is 31.0 h old, over the 30.0 h"
    )
    assert "no snapshot at all" in (fresh.problem("airflow_db", None, gap, 6, now) or "")


def test_restic_times_parse():
    assert fresh.snapshot_time("2026-12-06T11:02:07.123456789Z") == datetime(
        2026, 12, 6, 11, 2, 7, 123456, tzinfo=UTC
    )
    assert fresh.snapshot_time("2026-12-06T12:02:07.5+01:00") == datetime(
        2026, 12, 6, 11, 2, 7, 500000, tzinfo=UTC
    )
    with pytest.raises(ValueError, match="not a restic snapshot time"):
        fresh.snapshot_time("yesterday")
