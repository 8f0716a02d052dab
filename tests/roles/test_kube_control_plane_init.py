"""kube_control_plane's kubeadm init, run for real by ansible-playbook on this machine with a stand-in kubeadm
that fails as the real one does on a slow node: a failed first attempt is reported (why, tokens masked), reset and
run once more; a second failure stops the run with both reasons; with one attempt allowed there is no reset."""

from __future__ import annotations

import json
import os
import subprocess
import textwrap
from pathlib import Path

import pytest

from renderlab.workstation.nspawn_lab import lifecycle

ROOT = Path(__file__).resolve().parents[2]
PLAYBOOK = ROOT / ".venv" / "bin" / "ansible-playbook"
TOKEN = "abcdef.0123456789abcdef"
# The tail kubeadm prints when the control plane is not healthy in time (v1.35's words), with a token in it.
FAILED_INIT = f"""\
[init] Using Kubernetes version: v1.35.8
[bootstrap-token] Using token: {TOKEN}
[control-plane-check] kube-apiserver is not healthy after 4m0.000203585s
error: error execution phase wait-control-plane: failed while waiting for the control plane to start
"""


def _fake_kubeadm(bin_dir: Path, outcomes: list[str]) -> Path:
    """A kubeadm that logs each call and answers `init` with the next outcome (ok / fail), `reset` with 0."""
    bin_dir.mkdir()
    (bin_dir / "outcomes").write_text("".join(f"{o}\n" for o in outcomes))
    (bin_dir / "failed-init.txt").write_text(FAILED_INIT)
    script = bin_dir / "kubeadm"
    script.write_text(
        textwrap.dedent(
            """\
            #!/bin/sh
            here=$(dirname "$0")
            echo "$*" >> "$here/calls"
            [ "$1" = init ] || exit 0
            outcome=$(head -n 1 "$here/outcomes"); sed -i 1d "$here/outcomes"
            if [ "$outcome" = ok ]; then echo "Your Kubernetes control-plane has initialized successfully!"; exit 0; fi
            cat "$here/failed-init.txt" >&2
            exit 1
            """
        )
    )
    script.chmod(0o755)
    return bin_dir


def _play(
    tmp_path: Path, bin_dir: Path, attempts: int, result_format: str = "json"
) -> subprocess.CompletedProcess:
    playbook = tmp_path / "init.yml"
    playbook.write_text(
        textwrap.dedent(
            f"""\
            - hosts: localhost
              connection: local
              gather_facts: false
              tasks:
                - ansible.builtin.include_role:
                    name: kube_control_plane
                    tasks_from: init.yml
                  vars:
                    kube_control_plane_bin_dir: {bin_dir}
                    kube_control_plane_init_attempts: {attempts}
            """
        )
    )
    env = {
        **os.environ,
        "ANSIBLE_CONFIG": str(ROOT / "ansible" / "ansible.cfg"),
        "ANSIBLE_ROLES_PATH": str(ROOT / "ansible" / "roles"),
        "ANSIBLE_NOCOLOR": "1",
        # One JSON result a line (the lab's yaml format folds long messages): read back exactly.
        "ANSIBLE_CALLBACK_RESULT_FORMAT": result_format,
        "ANSIBLE_LOCALHOST_WARNING": "0",
        "ANSIBLE_INVENTORY_UNPARSED_WARNING": "0",
    }
    return subprocess.run(
        [str(PLAYBOOK), "-i", "localhost,", str(playbook)],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        check=False,
        timeout=300,
    )


def _calls(bin_dir: Path) -> list[str]:
    return [line.split()[0] for line in (bin_dir / "calls").read_text().splitlines()]


@pytest.mark.parametrize(
    ("outcomes", "attempts", "calls"),
    [(["ok"], 2, ["init"]), (["fail", "ok"], 2, ["init", "reset", "init"])],
    ids=["first-attempt", "after-a-reset"],
)
def test_init_succeeds(tmp_path, outcomes, attempts, calls):
    bin_dir = _fake_kubeadm(tmp_path / "bin", outcomes)
    run = _play(tmp_path, bin_dir, attempts)
    assert run.returncode == 0, run.stdout + run.stderr
    assert _calls(bin_dir) == calls
    if "fail" in outcomes:
        # The failed attempt is said in the log, with kubeadm's own reason, the token masked.
        assert "kubeadm init failed on localhost (attempt 1, exit 1)" in run.stdout
        assert "failed while waiting for the control plane to start" in run.stdout
    else:
        assert "kubeadm init failed" not in run.stdout
    assert TOKEN not in run.stdout + run.stderr
    assert "Your Kubernetes control-plane" not in run.stdout  # the init's own output stays out of the log


def test_a_second_failure_stops_the_run_with_both_reasons(tmp_path):
    bin_dir = _fake_kubeadm(tmp_path / "bin", ["fail", "fail"])
    run = _play(tmp_path, bin_dir, 2)
    assert run.returncode == 2
    assert _calls(bin_dir) == ["init", "reset", "init"]
    fatal = [line for line in run.stdout.splitlines() if line.startswith("fatal: [localhost]")]
    assert len(fatal) == 3, run.stdout  # each failed init (rescued), then the report that stops the run
    assert (
        run.stdout.split(fatal[-1])[0]
        .rstrip()
        .endswith("TASK [kube_control_plane : Report why kubeadm init failed (tokens masked)] " + "*" * 5)
    )
    report = json.loads(fatal[-1].split(" => ", 1)[1])["msg"]
    assert "(attempt 1, exit 1)" in report and "(attempt 2, exit 1)" in report
    assert "after kubeadm reset" in report and "wait-control-plane" in report
    assert "v1.35.8 | [bootstrap-token] Using token: <token> | [control-plane-check]" in report  # a line each
    assert "<token>" in report and TOKEN not in run.stdout + run.stderr


def test_one_attempt_allowed_means_no_reset(tmp_path):
    bin_dir = _fake_kubeadm(tmp_path / "bin", ["fail", "ok"])
    run = _play(tmp_path, bin_dir, 1)
    assert run.returncode == 2
    assert _calls(bin_dir) == ["init"]
    assert "(attempt 1, exit 1)" in run.stdout and "attempt 2" not in run.stdout


def test_the_labs_log_reader_tells_the_reason_from_the_yaml_log(tmp_path):
    """The reason reaches a test's failure message (a CI machine's log is out of reach) from the result format
    ansible.cfg sets, where a long message is folded over several lines."""
    bin_dir = _fake_kubeadm(tmp_path / "bin", ["fail", "fail"])
    run = _play(tmp_path, bin_dir, 2, result_format="yaml")
    assert run.returncode == 2
    recap = {
        h: {"ok": int(ok), "changed": int(ch), "unreachable": int(un), "failed": int(fa)}
        for h, ok, ch, un, fa in lifecycle.RECAP.findall(run.stdout)
    }
    read = lifecycle.PlaybookRun(
        2,
        1.0,
        recap,
        tmp_path / "site.log",
        lifecycle._failures(run.stdout),
        lifecycle._fatal_messages(run.stdout),
    )
    assert read.real_failures == {
        "localhost": [
            "kube_control_plane : Run kubeadm init",
            "kube_control_plane : Run kubeadm init",
            "kube_control_plane : Report why kubeadm init failed (tokens masked)",
        ]
    }
    why = read.why()
    assert why.startswith("localhost: kube_control_plane : Report why kubeadm init failed (tokens masked): ")
    assert "(attempt 1, exit 1)" in why and "(attempt 2, exit 1)" in why
    assert "failed while waiting for the control plane to start" in why and TOKEN not in why
