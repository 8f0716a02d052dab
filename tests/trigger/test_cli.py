"""`make render` against the real Airflow of the fixture: trigger, follow to success; a failing task exits
non-zero with its log tail; a refused parameter or a wrong login is one clear message (exit 2)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.trigger.conftest import REPO

pytestmark = [pytest.mark.slow, pytest.mark.airflow]


def render(airflow, *args: str, env_extra: dict | None = None, timeout: float = 900):
    env = {**airflow.env(), **(env_extra or {})}
    return subprocess.run(
        [sys.executable, "-m", "renderlab.workstation.trigger", "--poll", "1", *args],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def test_render_follows_a_run_to_success(airflow):
    r = render(
        airflow,
        *("--song", "frere_groove", "--frames", "1-2", "--preset", "demo", "--samples", "1"),
        *("--resolution-percentage", "10", "--frames-per-chunk", "2", "--notify", "none"),
    )
    out = r.stdout
    assert r.returncode == 0, out + r.stderr
    assert "render: triggered manual__" in out
    # One progress line per change: the counts move, the tasks in flight are named.
    progress = [
        ln
        for ln in out.splitlines()
        if re.match(r"render: (queued|running|success) \d\d:\d\d \| \d+/\d+ tasks done", ln)
    ]
    assert len(progress) >= 3 and progress[-1].startswith("render: success")
    done, total = re.search(r"(\d+)/(\d+) tasks done", progress[-1]).groups()
    assert done == total
    assert any("now: build" in ln for ln in progress)
    folder = Path(re.search(r"^  run folder: (.+)$", out, re.M).group(1))
    assert folder.parent == airflow.share / "runs"
    assert (folder / "video" / "frere_groove_main.mp4").is_file()
    assert (folder / "report" / "notification-success.json").is_file()


def test_make_render_failure_exits_nonzero_with_the_failed_tasks_log_tail(airflow):
    # 9-3 passes the schema (two numbers) but the plan_run task refuses it: a real task failure, found fast.
    r = subprocess.run(
        ["make", "-s", "render", "SONG=frere_groove", "FRAMES=9-3", "PRESET=demo", "RENDER_ARGS=--poll 1"],
        cwd=REPO,
        env=airflow.env(),
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    out = r.stdout
    assert r.returncode != 0, out
    assert (
        "render: FAILED after" in out
        and "plan_run" in out.split("render: FAILED after", 1)[1].splitlines()[0]
    )
    tail = out.split("--- the end of plan_run's log", 1)[1]
    assert "the first frame is after the last" in tail  # the task's own error, from its log in Airflow


def test_refused_parameter_is_the_schemas_message(airflow):
    r = render(airflow, "--song", "frere_groove", "--frames", "5-")
    assert r.returncode == 2
    assert r.stderr.strip() == (
        "render: Airflow refused the parameters: Invalid input for param frames: "
        "'5-' does not match '^(all|[1-9][0-9]{0,5}-[1-9][0-9]{0,5})$'"
    )


def test_wrong_password_is_one_clear_message(airflow):
    r = render(airflow, "--song", "frere_groove", env_extra={"AIRFLOW_PASSWORD": "not-the-password"})
    assert r.returncode == 2
    assert "refused the login of 'admin'" in r.stderr and "AIRFLOW_PASSWORD" in r.stderr
    assert "not-the-password" not in r.stderr + r.stdout
