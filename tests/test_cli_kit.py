"""The one CLI kit (renderlab/base/cli.py, errors.py) and process-group stopping (process_group.py)."""

from __future__ import annotations

import errno
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from renderlab.base import cli, errors, process_group
from tests import pid_namespace


class Refused(errors.CommandError):
    exit_code = 6


def _guarded(capsys, main, **kw) -> tuple[int, list[str]]:
    code = cli.guard("tool", main, **kw)
    return code, capsys.readouterr().err.splitlines()


def test_each_failure_is_one_line_with_its_own_status(capsys, monkeypatch):
    monkeypatch.delenv("RENDERLAB_DEBUG", raising=False)

    def refused():
        raise Refused("cannot write /x: read-only\n(pick another --dest)")

    def bug():
        raise KeyError("k")

    def parse():
        cli.Parser(prog="python -m tool").parse_args(["--bogus"])

    assert _guarded(capsys, refused) == (
        6,
        ["tool: error: cannot write /x: read-only / (pick another --dest)"],
    )
    code, lines = _guarded(capsys, bug)
    assert code == cli.EXIT_INTERNAL and len(lines) == 1 and "internal error KeyError" in lines[0]
    code, lines = _guarded(capsys, parse)
    assert code == cli.EXIT_USAGE and lines == ["tool: error: unrecognized arguments: --bogus (see --help)"]


def test_a_report_of_several_problems_keeps_its_lines(capsys):
    class Report(errors.CommandError):
        keep_lines = True

    def main():
        raise Report("stack.yaml: 2 problem(s):\n  - a\n  - b")

    assert _guarded(capsys, main) == (1, ["tool: error: stack.yaml: 2 problem(s):", "  - a", "  - b"])


def test_an_unwrapped_oserror_reads_as_the_command_says(capsys):
    def main():
        raise OSError(errno.ENOSPC, "No space left on device", "/share/f")

    def on_oserror(e):
        return Refused(errors.write_failure(e, e.filename, "write", place="the share", option="--dest"))

    assert _guarded(capsys, main, on_oserror=on_oserror) == (
        6,
        ["tool: error: cannot write /share/f: No space left on device (the share is full; free space on it "
         "or pick another --dest)"],
    )  # fmt: skip


@pytest.mark.parametrize(
    ("code", "words"),
    [(errno.EROFS, "not writable"), (errno.ENOTDIR, "a file stands"), (errno.ENOENT, "does not exist"),
     (errno.EIO, "check the disk")],
)  # fmt: skip
def test_the_one_errno_table(code, words):
    assert words in errors.write_hint(OSError(code, os.strerror(code)))


def test_a_job_prints_its_result_last_and_nothing_on_failure(tmp_path):
    script = (
        "import sys\nfrom renderlab.base import cli, errors\n"
        "def main(argv):\n"
        "    if argv == ['bad']: raise errors.CommandError('no')\n"
        "    print('progress'); return {'argv': argv}\n"
        "cli.run_job('job', main)\n"
    )
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    ok = subprocess.run(
        [sys.executable, "-c", script, "a", "--", "b"], capture_output=True, text=True, env=env, check=False
    )
    assert ok.returncode == 0 and json.loads(ok.stdout.splitlines()[-1]) == {"argv": ["b"]}
    bad = subprocess.run(
        [sys.executable, "-c", script, "bad"], capture_output=True, text=True, env=env, check=False
    )
    assert (bad.returncode, bad.stdout, bad.stderr) == (1, "", "job: error: no\n")


def test_a_job_that_is_a_containers_pid_1_stops_on_sigterm(tmp_path):
    # PID 1 of a PID namespace (a container's entrypoint) gets no signal it has no handler for: the kernel drops
    # it. The job runs as that PID 1 here, as the kubelet's runtime starts it.
    ready = tmp_path / "ready"
    script = (
        "import time; from pathlib import Path; from renderlab.base import cli\n"
        "def main(argv):\n"
        f"    Path({str(ready)!r}).write_text('x')\n"
        "    while True: time.sleep(0.05)\n"
        "cli.run_job('render', main)\n"
    )
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    proc = pid_namespace.start([sys.executable, "-c", script], env=env, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE)  # fmt: skip
    deadline = time.monotonic() + 30
    while not ready.exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    out, err = pid_namespace.terminate(proc, 10, "the job")
    assert (proc.returncode, out, err) == (cli.EXIT_INTERRUPTED, "", "render: interrupted\n")


def _pids_alive(pids: list[int]) -> list[int]:
    return [p for p in pids if process_group.alive(p)]


def test_stopping_a_group_takes_the_children_that_ignore_the_signal(tmp_path):
    # The leader exits on SIGTERM at once; its child ignores SIGTERM and must still go (SIGKILL to the group).
    pidfile = tmp_path / "child"
    proc = subprocess.Popen(
        ["sh", "-c", f"sh -c 'trap \"\" TERM; echo $$ > {pidfile}; while :; do sleep 0.1; done' & wait"],
        start_new_session=True,
    )
    while not pidfile.exists() or not pidfile.read_text().strip():
        time.sleep(0.01)
    child = int(pidfile.read_text())
    process_group.stop(proc, grace=0.5)
    assert proc.returncode is not None
    deadline = time.monotonic() + 5
    while _pids_alive([child]) and time.monotonic() < deadline:
        time.sleep(0.01)  # the killed child is reaped by init
    assert not _pids_alive([child])


def test_signalling_a_group_that_is_gone_is_quiet():
    proc = subprocess.Popen(["true"], start_new_session=True)
    proc.wait()
    process_group.signal_group(proc.pid, signal.SIGTERM)
    process_group.stop(proc)
    assert not process_group.alive(proc.pid)
