"""Fixtures for the pipeline tests: a private Airflow home (SQLite, migrated once), a file:// depot, a share
folder, a local HTTP receiver for notifications, and a runner that executes the DAG with dag.test() in a
child process (so each run gets a clean Airflow import and leaves no process behind)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from unittest import mock

import pytest

REPO = Path(__file__).resolve().parents[2]
STANDIN = Path(__file__).resolve().parent / "standin"
RUN_DAG = Path(__file__).resolve().parent / "run_dag.py"


@pytest.fixture(scope="session")
def airflow_home(tmp_path_factory) -> Path:
    home = tmp_path_factory.mktemp("airflow")
    env = base_env(home)
    proc = subprocess.run(
        [str(Path(sys.executable).with_name("airflow")), "db", "migrate"],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    return home


def base_env(home: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW", "RENDERLAB"))}
    env.update(
        {
            "AIRFLOW_HOME": str(home),
            "AIRFLOW__CORE__DAGS_FOLDER": str(REPO / "dags"),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "AIRFLOW__CORE__PARALLELISM": "2",
            "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{home / 'airflow.db'}",
            "PYTHONPATH": str(REPO),
        }
    )
    return env


class Receiver:
    """A webhook endpoint on loopback that records every JSON body posted to it."""

    def __init__(self):
        self.bodies: list[dict] = []
        received = self.bodies

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                length = int(self.headers.get("Content-Length", 0))
                received.append(json.loads(self.rfile.read(length)))
                self.send_response(200)
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver():
    r = Receiver()
    yield r
    r.close()


@pytest.fixture
def depot(tmp_path) -> Path:
    """A file:// depot with one song project (any bytes: the stand-in does not parse MIDI)."""
    root = tmp_path / "depot" / "songs"
    (root / "tiny").mkdir(parents=True)
    (root / "tiny" / "song.mid").write_bytes(b"MThd standin")
    return root


def run_dag(
    home: Path,
    share: Path,
    depot: Path,
    conf: dict | list[dict],
    *,
    settings: dict | None = None,
    extra_env: dict | None = None,
    timeout: int = 600,
) -> dict | list[dict]:
    """Run the render DAG with dag.test(); returns {'state', 'tis', 'error', 'log'} (a list for a list)."""
    env = base_env(home)
    var = {"backend": "local", "share_root": str(share), "depot": f"file://{depot}", **(settings or {})}
    # A None setting means "not set here": the lab config (settings' "config") decides it.
    env["AIRFLOW_VAR_RENDERLAB"] = json.dumps({k: v for k, v in var.items() if v is not None})
    env.update(extra_env or {})
    proc = subprocess.run(
        [sys.executable, str(RUN_DAG), json.dumps(conf)],
        env=env,
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    out = proc.stdout.strip().splitlines()
    try:
        result = json.loads(out[-1])
    except (IndexError, json.JSONDecodeError):
        raise AssertionError(
            f"run_dag printed no result:\n{proc.stdout[-4000:]}\n{proc.stderr[-4000:]}"
        ) from None
    if isinstance(result, dict):
        result["log"] = proc.stdout + proc.stderr
    return result


@pytest.fixture
def no_cluster():
    """The provider asks the hook whether it runs in a cluster while building the pod; answer offline."""
    with mock.patch(
        "airflow.providers.cncf.kubernetes.hooks.kubernetes.KubernetesHook.is_in_cluster",
        new_callable=mock.PropertyMock,
        return_value=False,
    ):
        yield
