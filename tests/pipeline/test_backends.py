"""The Job contract and the local backend: same spec, command run with the share as working directory,
output streamed to the log, one JSON result, clear failures, bounded concurrency, deadlines enforced."""

from __future__ import annotations

import json
import logging
import sys
import threading
import time

import psutil
import pytest
from pydantic import ValidationError

from renderlab.pipeline.backends.processes import ProcessBackend
from renderlab.pipeline.jobspec import JobFailed, JobSpec, SecretRef, parse_result_line
from renderlab.pipeline.settings import Settings


class ListHandler(logging.Handler):
    def __init__(self):
        super().__init__()
        self.lines: list[str] = []

    def emit(self, record):
        self.lines.append(record.getMessage())


@pytest.fixture
def log():
    logger = logging.getLogger(f"test-backend-{time.monotonic_ns()}")
    handler = ListHandler()
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    logger.lines = handler.lines  # type: ignore[attr-defined]
    return logger


def backend(share, **kw) -> ProcessBackend:
    return ProcessBackend(Settings(backend="local", share_root=str(share), depot="file:///unused", **kw))


def py(code: str, **kw) -> JobSpec:
    return JobSpec(name=kw.pop("name", "job"), image="blender", command=["python", "-c", code], **kw)


def test_spec_rejects_bad_values():
    with pytest.raises(ValidationError, match="name"):
        JobSpec(name="Render_Chunk", image="blender", command=["python"])
    with pytest.raises(ValidationError, match="image"):
        JobSpec(name="x", image="ubuntu", command=["python"])
    with pytest.raises(ValidationError, match="command"):
        JobSpec(name="x", image="blender", command=[])
    with pytest.raises(ValidationError, match="unexpected|extra"):
        JobSpec(name="x", image="blender", command=["true"], privileged=True)


def test_result_line_must_be_last():
    assert parse_result_line("j", ["progress", '{"a": 1}', ""]) == {"a": 1}
    with pytest.raises(JobFailed, match="not a JSON result"):
        parse_result_line("j", ['{"a": 1}', "Blender quit"])


def test_runs_in_share_streams_output_and_returns_result(tmp_path, log):
    code = (
        "import os, sys, json; print('step 1'); print('to stderr', file=sys.stderr);"
        "import renderlab; print(json.dumps({'cwd': os.getcwd(), 'mode': os.environ['MODE']}))"
    )
    res = backend(tmp_path).run(py(code, env={"MODE": "x"}), log)
    assert res.exit_code == 0
    assert res.result == {"cwd": str(tmp_path), "mode": "x"}  # the repo is importable, cwd is the share
    assert "[job] step 1" in log.lines and "[job] to stderr" in log.lines


def test_failure_carries_the_entrypoints_error(tmp_path, log):
    code = "import sys; print('render: error: --blend x.blend does not exist', file=sys.stderr); sys.exit(2)"
    with pytest.raises(JobFailed, match=r"(?s)exited with status 2.*--blend x.blend does not exist"):
        backend(tmp_path).run(py(code), log)


def test_secrets_come_from_the_environment(tmp_path, log, monkeypatch):
    spec = py(
        "import os, json; print(json.dumps({'user': os.environ['P4USER']}))",
        secrets=[SecretRef(env="P4USER", secret="renderlab-p4", key="user")],
    )
    monkeypatch.delenv("P4USER", raising=False)
    with pytest.raises(JobFailed, match=r"P4USER \(Secret renderlab-p4/user\)"):
        backend(tmp_path).run(spec, log)
    monkeypatch.setenv("P4USER", "render")
    assert backend(tmp_path).run(spec, log).result == {"user": "render"}


@pytest.mark.parametrize(("slots", "overlap"), [(1, False), (2, True)])
def test_slots_bound_concurrency(tmp_path, log, slots, overlap):
    # Barrier files on the share instead of timing: a Job marks that it started, waits for the other to
    # be running (started, not ended), and if they meet waits until the other saw it too before it ends.
    # With two slots they meet as soon as both run; with one the second cannot start while the first
    # runs, so however long the first waits it is alone, and the second finds it ended.
    code = (
        "import json, os, time\n"
        "from pathlib import Path as P\n"
        "me = os.environ['JOB']; other = 'b' if me == 'a' else 'a'\n"
        "def wait(cond):\n"
        "    deadline = time.monotonic() + float(os.environ['WAIT'])\n"
        "    while not cond() and time.monotonic() < deadline:\n"
        "        time.sleep(0.02)\n"
        "    return cond()\n"
        "P('started-' + me).touch()\n"
        "met = wait(lambda: P('started-' + other).exists() and not P('ended-' + other).exists())\n"
        "if met:\n"
        "    P('seen-' + me).touch()\n"
        "    wait(lambda: P('seen-' + other).exists())\n"
        "P('ended-' + me).touch()\n"
        "print(json.dumps({'met': met}))\n"
    )
    wait = "60" if overlap else "3"
    results = []

    def one(name):
        spec = py(code, name=f"j{name}", env={"JOB": name, "WAIT": wait})
        results.append(backend(tmp_path, local_slots=slots).run(spec, log).result)

    threads = [threading.Thread(target=one, args=(n,)) for n in "ab"]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert [r["met"] for r in results] == [overlap, overlap]


def test_deadline_stops_the_whole_process_group(tmp_path, log):
    # The Job starts a grandchild and then hangs silently; both must be gone after the deadline.
    code = (
        "import subprocess, sys, time;"
        f"p = subprocess.Popen([{sys.executable!r}, '-c', 'import time; time.sleep(60)']);"
        "open('grandchild.pid', 'w').write(str(p.pid)); time.sleep(60)"
    )
    started = time.monotonic()
    with pytest.raises(JobFailed, match="timeout of 2s"):
        backend(tmp_path).run(py(code, timeout_s=2), log)
    assert time.monotonic() - started < 20
    pid = int((tmp_path / "grandchild.pid").read_text())
    deadline = time.monotonic() + 5
    while psutil.pid_exists(pid) and time.monotonic() < deadline:
        try:
            if psutil.Process(pid).status() == psutil.STATUS_ZOMBIE:
                break
        except psutil.NoSuchProcess:
            break
        time.sleep(0.1)
    else:
        assert not psutil.pid_exists(pid), "the Job's grandchild outlived the deadline"


def test_result_json_line_with_progress_on_stderr(tmp_path, log):
    """Entry points print progress on stderr and the result last on stdout; both reach the log."""
    code = "import sys, json; [print(f'frame {i}', file=sys.stderr, flush=True) for i in range(3)]; print(json.dumps({'n': 3}))"
    res = backend(tmp_path).run(py(code), log)
    assert res.result == {"n": 3}
    assert [ln for ln in log.lines if ln.startswith("[job] frame")] == [f"[job] frame {i}" for i in range(3)]
    assert json.loads(log.lines[-2].split("] ", 1)[1]) == {"n": 3}


def test_a_job_gets_only_the_environment_its_spec_names(tmp_path, log, monkeypatch):
    """As in a pod: the worker's own variables (a P4 password, cloud keys) never reach a Job that does not
    name them; a Job that names a secret gets exactly that one."""
    monkeypatch.setenv("P4PASSWD", "worker-secret-password")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "worker-cloud-key")
    monkeypatch.setenv("P4USER", "render")
    dump = "import os, json; print(json.dumps(dict(os.environ)))"
    env = backend(tmp_path).run(py(dump, env={"MODE": "x"}), log).result
    assert "P4PASSWD" not in env and "AWS_SECRET_ACCESS_KEY" not in env and "P4USER" not in env
    assert env["MODE"] == "x" and env["RENDERLAB_SHARE"] == str(tmp_path)
    assert "worker-secret-password" not in json.dumps(env)
    named = py(dump, secrets=[SecretRef(env="P4USER", secret="renderlab-p4", key="user")])
    env = backend(tmp_path).run(named, log).result
    assert env["P4USER"] == "render" and "P4PASSWD" not in env
