"""The Pulumi passphrase from a file: created 0600 once, read by every place that runs Pulumi, never a prompt."""

from __future__ import annotations

import json
import os
import stat
import subprocess
from pathlib import Path

import pytest

from renderlab.lab import host_secrets, passphrase

ROOT = Path(__file__).resolve().parents[1]


def test_ensure_creates_a_private_file_once(tmp_path: Path):
    env = {"HOME": str(tmp_path)}
    path = passphrase.ensure(env)
    assert path == tmp_path / ".renderlab" / "pulumi-passphrase"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    first = path.read_text()
    assert len(first.strip()) >= 40
    assert passphrase.ensure(env) == path and path.read_text() == first  # never replaced
    assert passphrase.source(env) == f"passphrase file {path}"


def test_a_readable_passphrase_file_is_refused(tmp_path: Path):
    env = {"HOME": str(tmp_path)}
    path = passphrase.ensure(env)
    path.chmod(0o644)
    with pytest.raises(passphrase.PassphraseError, match=r"readable by others \(mode 0644\).*chmod 600"):
        passphrase.source(env)


def test_the_environment_wins_and_a_named_file_must_exist(tmp_path: Path):
    assert passphrase.ensure({"HOME": str(tmp_path), "PULUMI_CONFIG_PASSPHRASE": "x"}) is None
    with pytest.raises(passphrase.PassphraseError, match="PULUMI_CONFIG_PASSPHRASE_FILE=/nope: no such file"):
        passphrase.ensure({"HOME": str(tmp_path), "PULUMI_CONFIG_PASSPHRASE_FILE": "/nope"})
    assert not (tmp_path / ".renderlab").exists()


def fake_pulumi(tmp_path: Path) -> Path:
    """A `pulumi` that records its passphrase environment and stdin, and answers the host_secrets output."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    script = bin_dir / "pulumi"
    values = host_secrets.generate()  # values of the right format: the reader checks them
    script.write_text(
        "#!/bin/sh\n"
        f'echo "file=$PULUMI_CONFIG_PASSPHRASE_FILE args=$*" >> {tmp_path}/calls\n'
        f'[ -t 0 ] && echo "stdin is a terminal" >> {tmp_path}/calls\n'
        '[ -r "$PULUMI_CONFIG_PASSPHRASE_FILE" ] || { echo "error: passphrase must be set" >&2; exit 255; }\n'
        f"printf '%s\\n' '{json.dumps(values)}'\n"  # not echo: dash's echo expands the PEM's \\n
    )
    script.chmod(0o755)
    return bin_dir


def test_from_pulumi_without_a_passphrase_says_what_to_do(tmp_path: Path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.delenv("PULUMI_CONFIG_PASSPHRASE", raising=False)
    monkeypatch.delenv("PULUMI_CONFIG_PASSPHRASE_FILE", raising=False)
    monkeypatch.setenv("PATH", f"{fake_pulumi(tmp_path)}:{os.environ['PATH']}")
    with pytest.raises(host_secrets.SecretsError, match="no Pulumi passphrase: .* `make lab-vms` creates"):
        host_secrets.from_pulumi("lab")
    assert not (tmp_path / "calls").exists()  # said before Pulumi ran
    passphrase.ensure()
    assert set(host_secrets.from_pulumi("lab")) == set(host_secrets.SECRET_NAMES)
    assert f"file={tmp_path}/.renderlab/pulumi-passphrase" in (tmp_path / "calls").read_text()


def test_make_lab_targets_hand_pulumi_the_passphrase_file(tmp_path: Path):
    """The Makefile's Pulumi runs create the file on the first run and point Pulumi at it."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PULUMI_")}
    env.update(HOME=str(tmp_path), PATH=f"{fake_pulumi(tmp_path)}:{env['PATH']}")
    inventory = tmp_path / "inv.yml"
    result = subprocess.run(
        ["make", "-s", "lab-inventory", "STACK=lab", f"INVENTORY={inventory}"],
        check=False,
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stderr
    path = tmp_path / ".renderlab" / "pulumi-passphrase"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert f"file={path} args=stack output inventory" in (tmp_path / "calls").read_text()
