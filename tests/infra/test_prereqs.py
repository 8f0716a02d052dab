"""make lab's prerequisites stage (renderlab/workstation/prereqs.py): PVE's version and the token's privileges read
from the API (fakepve enforces PVE's ACLs), and the workstation's tools, one line each."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from infra.proxmox.privileges import PRIVILEGES
from renderlab.lab.config import parse
from renderlab.workstation import prereqs
from tests.example_stack import TEST_KEY, own
from tests.infra.conftest import FAST, TOKEN_SECRET


def config_for(pve, cafile):
    data = own()
    data["config"]["renderlab:proxmox"].update(endpoint=pve.url, ca_file=cafile, node="pve1")
    return parse(data)


def grant(pve, privs):
    pve.grant("renderlab@pve", "/", *privs)


def test_a_ready_pve_passes(pve, fakepve_cafile):
    grant(pve, PRIVILEGES)
    lines = prereqs.check_proxmox(config_for(pve, fakepve_cafile), TOKEN_SECRET, FAST)
    assert [ok for ok, _ in lines] == [True, True], lines
    assert lines[0][1].startswith(f"proxmox: PVE {pve.version} at ")


def test_an_old_pve_and_a_missing_privilege_are_named(pve, fakepve_cafile):
    pve.version = "8.3.2"
    grant(pve, [p for p in PRIVILEGES if p != "VM.Config.HWType"])
    (ok_v, version), (ok_p, privs) = prereqs.check_proxmox(
        config_for(pve, fakepve_cafile), TOKEN_SECRET, FAST
    )
    assert not ok_v and "needs 8.4 or later" in version
    assert not ok_p and "lacks VM.Config.HWType on /" in privs


def test_a_wrong_token_is_one_line(pve, fakepve_cafile):
    (line,) = prereqs.check_proxmox(config_for(pve, fakepve_cafile), "wrong", FAST)
    assert line[0] is False and "renderlab@pve!pulumi" in line[1]


def test_go_too_old_to_build_pulumi_says_where_to_get_a_new_one(monkeypatch, tmp_path: Path):
    monkeypatch.setattr(prereqs.shutil, "which", lambda name: "/usr/bin/go" if name == "go" else None)

    def run(cmd, **_):
        out = "go version go1.19.8 linux/amd64" if cmd[0] == "go" else str(tmp_path)  # no pulumi there
        return subprocess.CompletedProcess(cmd, 0, out, "")

    ok, line = prereqs.check_pulumi(run)
    assert not ok and "Go 1.19 is too old" in line and "Debian 12's golang package is 1.19" in line


def test_the_ssh_key_needs_its_private_half(pve, fakepve_cafile, tmp_path: Path, monkeypatch):
    monkeypatch.setattr(prereqs.shutil, "which", lambda name: None)  # no agent
    config = config_for(pve, fakepve_cafile)
    assert prereqs.check_ssh_key(config, tmp_path)[0] is False
    (tmp_path / ".ssh").mkdir()
    (tmp_path / ".ssh" / "id_ed25519.pub").write_text(f"ssh-ed25519 {TEST_KEY} me@here\n")
    assert prereqs.check_ssh_key(config, tmp_path)[0] is False  # a .pub alone logs nobody in
    (tmp_path / ".ssh" / "id_ed25519").write_text("private\n")
    assert prereqs.check_ssh_key(config, tmp_path)[0] is True


@pytest.mark.usefixtures("token_env")
def test_the_stage_prints_one_line_each(pve, fakepve_cafile, tmp_path: Path, capsys, monkeypatch):
    import yaml

    grant(pve, PRIVILEGES)
    monkeypatch.setenv("HOME", str(tmp_path))
    data = own()
    data["config"]["renderlab:proxmox"].update(endpoint=pve.url, ca_file=fakepve_cafile, node="pve1")
    stack = tmp_path / "Pulumi.lab.yaml"
    stack.write_text(yaml.safe_dump(data))
    prereqs.main([str(stack)])
    lines = capsys.readouterr().out.splitlines()
    kinds = [line.split()[1].rstrip(":") for line in lines]
    assert kinds == ["config", "proxmox", "proxmox", "python", "pulumi", "ssh", "pulumi"]
    assert all(line[:4] in ("ok  ", "FAIL") for line in lines)


def _fake_build_tools(bin_dir: Path):
    def run(cmd, **kw):
        return subprocess.CompletedProcess(cmd, 0, stdout=f"{bin_dir}\n", stderr="")

    return run


def test_the_token_is_read_with_the_built_cli_when_none_is_on_path(tmp_path: Path, monkeypatch):
    """`make tools` leaves the CLI in its cache, not on PATH: reading the stack's token ran `pulumi` by name
    and crashed with FileNotFoundError there; now it uses the CLI the Makefile uses, and without one says
    nothing (the stage then names what is missing)."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    monkeypatch.delenv("PROXMOX_API_TOKEN", raising=False)
    monkeypatch.setenv("PULUMI_CONFIG_PASSPHRASE", "x")
    real_run = subprocess.run
    monkeypatch.setattr(prereqs.subprocess, "run", lambda cmd, **kw: (
        _fake_build_tools(bin_dir)(cmd) if str(cmd[0]).endswith("build-tools.sh") else real_run(cmd, **kw)
    ))  # fmt: skip
    assert prereqs.proxmox_token("lab") == ""  # no CLI anywhere: no crash
    cli = bin_dir / "pulumi"
    cli.write_text("#!/bin/sh\necho token-from-the-stack\n")
    cli.chmod(0o755)
    assert prereqs.proxmox_token("lab") == "token-from-the-stack"
