"""`make lab-backup-workstation`: the stack file, its Pulumi state and the host secrets, encrypted with restic,
and restored byte-identical (Debian's restic for real; a stand-in `pulumi` prints a stack export)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.skipif(shutil.which("restic") is None, reason="needs restic: apt-get install restic")


def _cli(args: list[str], env: dict) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "renderlab.workstation.backup", *args],
        cwd=ROOT, env=env, capture_output=True, text=True, check=False,
    )  # fmt: skip


def test_backup_then_restore_in_place_is_byte_identical(tmp_path):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    export = {"version": 3, "deployment": {"secrets_providers": {"type": "passphrase"}, "resources": []}}
    (bin_dir / "pulumi").write_text(f"#!/bin/sh\necho '{json.dumps(export)}'\n")
    (bin_dir / "pulumi").chmod(0o755)
    env = {**os.environ, "PYTHONPATH": str(ROOT), "PATH": f"{bin_dir}:{os.environ['PATH']}"}
    stack, secrets = tmp_path / "Pulumi.lab.yaml", tmp_path / "lab" / "secrets.yml"
    secrets.parent.mkdir()
    stack.write_text("config:\n  renderlab:docs: {node_port: 30080}\n")
    secrets.write_bytes(os.urandom(300))
    before = {p: p.read_bytes() for p in (stack, secrets)}
    repo, password = tmp_path / "repo", tmp_path / "cfg" / "pw"
    common = ["--repo", str(repo), "--password-file", str(password)]
    done = _cli(
        ["backup", *common, "--stack-file", str(stack), "--file", str(secrets), "--pulumi-stack", "lab"], env
    )
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout.splitlines()[-1])
    assert result["snapshot"] and result["state_snapshot"]
    assert password.stat().st_mode & 0o777 == 0o600 and password.parent.stat().st_mode & 0o777 == 0o700
    # Encrypted: no byte of the secrets file appears in the repository as is.
    assert not any(before[secrets][:64] in p.read_bytes() for p in repo.rglob("*") if p.is_file())
    renv = {**env, "RESTIC_REPOSITORY": str(repo), "RESTIC_PASSWORD_FILE": str(password)}
    state = subprocess.run(["restic", "dump", "latest", "--tag", "pulumi_state", "/pulumi-state-lab.json"],
                           env=renv, capture_output=True, check=True)  # fmt: skip
    assert json.loads(state.stdout) == export
    secrets.unlink()
    stack.write_text("damaged")
    back = _cli(["restore", *common, "--target", "/"], env)
    assert back.returncode == 0, back.stderr
    assert {p: p.read_bytes() for p in (stack, secrets)} == before
    # A wrong password is one clear line.
    password.write_text("wrong\n")
    bad = _cli(["restore", *common, "--target", str(tmp_path / "x")], env)
    assert bad.returncode == 1 and bad.stderr.startswith("backup: error: restic restore latest failed")
