"""One real Airflow for the trigger tests, started the way `make airflow` starts it (its own module, a free
port, a temporary home and share) and stopped the way a person stops it: Ctrl-C (SIGINT). The fixture then
proves nothing it started is left, by PID. Plus a headless Chromium (Debian's, through Playwright)."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import psutil
import pytest

from renderlab.workstation import local_airflow
from tests.browser_support import browser  # noqa: F401  (pytest fixture: Debian's chromium, per module)

REPO = Path(__file__).resolve().parents[2]
DEPOT = REPO / "depot" / "songs"
START_TIMEOUT_S = 900  # 2 shared cores: the API server alone can take minutes to import


@dataclass
class RunningAirflow:
    url: str
    user: str
    password: str
    home: Path
    share: Path
    depot: Path
    proc: subprocess.Popen
    log: Path
    startup_s: float

    def env(self) -> dict[str, str]:
        """The environment a person's shell would have to use the CLI against this Airflow."""
        env = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW", "RENDERLAB"))}
        env.update({"AIRFLOW_URL": self.url, "AIRFLOW_USER": self.user, "AIRFLOW_PASSWORD": self.password})
        env["PYTHONPATH"] = str(REPO)
        return env


def _started_pids(home: Path) -> set[int]:
    state = json.loads((home / local_airflow.PIDS).read_text())
    pids = set()
    for entry in state["components"].values():
        pids.add(entry["pid"])
        with contextlib.suppress(psutil.NoSuchProcess):
            pids.update(c.pid for c in psutil.Process(entry["pid"]).children(recursive=True))
    return pids


def _alive(pids: set[int]) -> list[int]:
    alive = []
    for pid in pids:
        try:
            if psutil.Process(pid).status() != psutil.STATUS_ZOMBIE:
                alive.append(pid)
        except psutil.NoSuchProcess:
            pass
    return alive


def _describe(pids: list[int]) -> list[str]:
    """pid, status and command line of each process (what a leftover was, for whoever reads the failure)."""
    out = []
    for pid in pids:
        try:
            p = psutil.Process(pid)
            out.append(f"{pid} {p.status()} ppid={p.ppid()} {' '.join(p.cmdline())[:200]}")
        except psutil.NoSuchProcess:
            out.append(f"{pid} gone")
    return out


@pytest.fixture(scope="session")
def airflow(tmp_path_factory) -> RunningAirflow:
    base = tmp_path_factory.mktemp("airflow-ui")
    home, share = base / "home", base / "share"
    log = base / "make-airflow.log"
    cmd = [
        sys.executable,
        "-m",
        "renderlab.workstation.local_airflow",
        "start",
        "--port",
        "0",
        "--home",
        str(home),
    ]
    cmd += ["--share", str(share), "--depot", str(DEPOT), "--ready-timeout", str(START_TIMEOUT_S)]
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW", "RENDERLAB"))}
    env["PYTHONPATH"] = str(REPO)
    began = time.monotonic()
    with log.open("w") as out:
        proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=out, stderr=subprocess.STDOUT, text=True)
    ready = None
    while time.monotonic() - began < START_TIMEOUT_S + 120:
        text = log.read_text()
        ready = next((ln for ln in text.splitlines() if ln.startswith("airflow: ready in")), None)
        if ready or proc.poll() is not None:
            break
        time.sleep(1)
    if not ready:
        proc.send_signal(signal.SIGINT)
        proc.wait(60)
        pytest.fail(f"`make airflow` did not get ready (exit {proc.returncode}):\n{log.read_text()[-4000:]}")
    startup = time.monotonic() - began
    state = json.loads((home / local_airflow.PIDS).read_text())
    password = json.loads((home / "passwords.json").read_text())[local_airflow.ADMIN]
    # The login line is for the person at the terminal; the password must not be in any Airflow log.
    assert password in ready and state["url"] in ready
    running = RunningAirflow(
        state["url"], local_airflow.ADMIN, password, home, share, DEPOT, proc, log, startup
    )
    print(f"\nAirflow ready in {startup:.0f}s at {running.url}")
    try:
        yield running
    finally:
        started = _started_pids(home)
        proc.send_signal(signal.SIGINT)  # Ctrl-C
        code = proc.wait(120)
        leaked = [
            p for p in (home / "logs").rglob("*") if p.is_file() and password in p.read_text(errors="replace")
        ]
        assert not leaked, f"the admin password is written in {leaked}"
        assert code == 0, log.read_text()[-3000:]
        # `make airflow` has returned once its components exited; a child of theirs may still be on its way out
        # (a CI run that kept this Airflow through the lab lane saw one there at this check once).
        deadline = time.monotonic() + 15
        while _alive(started) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert _alive(started) == [], f"processes left after Ctrl-C: {_describe(_alive(started))}"
        assert local_airflow._home_processes(home) == []
        assert not (home / local_airflow.PIDS).exists()


@pytest.fixture
def shots(tmp_path):
    """Save numbered screenshots under the test's tmp dir: shots(page, "name")."""
    folder = tmp_path / "screenshots"
    folder.mkdir()
    count = [0]

    def take(page, name: str, **kw) -> Path:
        count[0] += 1
        path = folder / f"{count[0]:02d}-{name}.png"
        page.screenshot(path=str(path), **kw)
        return path

    take.folder = folder  # type: ignore[attr-defined]
    return take
