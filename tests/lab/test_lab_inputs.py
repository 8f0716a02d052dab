"""What the hosts layer is fed: inventory vars derived from the stack file, the secrets file, the local stack."""

from __future__ import annotations

import os
import stat
import sys
from pathlib import Path

import pytest
import yaml

from renderlab.lab import ansible_unsafe, host_secrets
from renderlab.lab import inventory as inventory_cli
from renderlab.lab.config import load
from renderlab.lab.inventory import inventory, lab_vars
from renderlab.workstation.nspawn_lab import lifecycle
from renderlab.workstation.nspawn_lab.options import LabError, LabOptions

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "Pulumi.example.yaml"


def test_lab_vars_come_from_the_config_and_hold_no_secrets():
    config = load(EXAMPLE)
    v = lab_vars(config)
    assert v["renderlab_share_name"] == config.share.name
    assert v["renderlab_share_uid"] == config.share.uid
    assert v["renderlab_perforce_port"] == config.perforce.port
    assert v["renderlab_kubernetes_version"] == config.kubernetes.version
    assert v["renderlab_pause_version"] == config.kubernetes.pause
    assert v["renderlab_pod_cidr"] == str(config.kubernetes.pod_cidr)
    assert v["renderlab_host_addresses"]["storage"] == "10.20.0.13"
    assert v["renderlab_ssh_public_keys"] == list(config.ssh.public_keys)
    assert not any(k in v for k in host_secrets.SECRET_NAMES)
    assert inventory(config)["all"]["vars"]["renderlab_share_path"] == config.share.path


def test_inventory_cli_writes_yaml_and_refuses_a_bad_config(tmp_path, capsys):
    out = tmp_path / "inv.yml"
    assert inventory_cli.main([str(EXAMPLE), "-o", str(out)]) == 0
    data = yaml.safe_load(out.read_text())
    assert data == ansible_unsafe.mark(ansible_unsafe.plain(data))  # every string marked unsafe
    data = ansible_unsafe.plain(data)
    assert data["all"]["children"]["storage"]["hosts"]["storage"]["ansible_host"] == "10.20.0.13"
    bad = tmp_path / "bad.yaml"
    bad.write_text(EXAMPLE.read_text().replace("cidr: 10.20.0.0/24", "cidr: 10.30.0.0/24"))
    out2 = tmp_path / "inv2.yml"
    assert inventory_cli.main([str(bad), "-o", str(out2)]) == 1
    assert "outside 10.30.0.0/24" in capsys.readouterr().err
    assert not out2.exists()
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


def test_generated_secrets_file_is_private_and_complete(tmp_path):
    path = tmp_path / "secrets.yml"
    assert host_secrets.main(["generate", "-o", str(path)]) == 0
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    values = yaml.safe_load(path.read_text())
    assert set(values) == set(host_secrets.SECRET_NAMES)
    assert len(set(values.values())) == len(values)
    assert all(len(v) >= 40 for v in values.values())
    assert host_secrets.is_fernet_key(values[host_secrets.FERNET_KEY])


def test_secrets_check_names_every_problem():
    values = {k: "x" * 10 for k in host_secrets.SECRET_NAMES}
    del values["renderlab_share_password"]
    values["renderlab_p4_super_password"] = ""
    values["surprise"] = "y"
    with pytest.raises(host_secrets.SecretsError) as err:
        host_secrets.check(values, "pulumi output host_secrets")
    msg = str(err.value)
    assert "missing renderlab_share_password" in msg
    assert "renderlab_p4_super_password is empty" in msg
    assert "unknown key surprise" in msg


def test_from_pulumi_reads_the_stack_output(tmp_path, monkeypatch):
    # The Pulumi CLI cannot be installed here: a stand-in prints what `pulumi stack output --json` prints.
    fake = tmp_path / "pulumi"
    values = host_secrets.generate()
    fake.write_text(
        f"#!{sys.executable}\nimport json, sys\n"
        "assert sys.argv[1:5] == ['stack', 'output', 'host_secrets', '--show-secrets'], sys.argv\n"
        f"print(json.dumps({values!r}))\n"
    )
    fake.chmod(0o755)
    monkeypatch.setenv("PATH", f"{tmp_path}:/usr/bin:/bin")
    monkeypatch.setenv("PULUMI_CONFIG_PASSPHRASE", "the-stack-passphrase")  # Pulumi never prompts here
    assert host_secrets.from_pulumi("lab") == values


def test_from_pulumi_without_the_cli_says_so(monkeypatch, tmp_path):
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.setenv("PULUMI_CONFIG_PASSPHRASE", "the-stack-passphrase")
    with pytest.raises(host_secrets.SecretsError, match="pulumi CLI is not on PATH"):
        host_secrets.from_pulumi(None)


def test_local_stack_file_is_a_valid_lab_config_on_the_lab_subnet(tmp_path):
    s = LabOptions.from_env({"RENDERLAB_LAB_CACHE": str(tmp_path), "RENDERLAB_LAB_SUBNET": "10.231.0.0/24"})
    s.state.mkdir(parents=True)
    addresses = lifecycle.write_stack(
        s, "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIFakeKeyForTheTest0000 t", ["10.0.0.53"]
    )
    config = load(s.state / "stack.yaml")
    assert str(config.network.cidr) == "10.231.0.0/24"
    assert str(config.network.gateway) == "10.231.0.1"
    assert {config.address(n) for n in config.hosts} == set(addresses.values())
    assert config.ssh.public_keys[0].endswith("t")
    assert set(config.hosts) == set(load(EXAMPLE).hosts)


def test_settings_refuse_bad_parameters():
    with pytest.raises(LabError, match="RENDERLAB_LAB_SUBNET"):
        LabOptions.from_env({"RENDERLAB_LAB_SUBNET": "8.8.8.0/24"})
    with pytest.raises(LabError, match="RENDERLAB_LAB_BRIDGE"):
        LabOptions.from_env({"RENDERLAB_LAB_BRIDGE": "Bad-Name!"})
    with pytest.raises(LabError, match="RENDERLAB_LAB_SUBNET"):
        LabOptions.from_env({"RENDERLAB_LAB_SUBNET": "10.231.0.1/24"})


def test_playbook_log_tells_vendor_stops_from_real_failures(tmp_path, monkeypatch):
    text = (Path(__file__).parent / "fixtures" / "playbook-with-failures.log").read_text()
    recap = {
        h: {"ok": int(ok), "changed": int(ch), "unreachable": int(un), "failed": int(fa)}
        for h, ok, ch, un, fa in lifecycle.RECAP.findall(text)
    }
    run = lifecycle.PlaybookRun(
        2, 1.0, recap, tmp_path / "x.log", lifecycle._failures(text), lifecycle._fatal_messages(text)
    )
    assert run.failures == {
        # the rescued download failure, then site.yml's report that ends the host
        "k": ["perforce : Download Perforce's signing key", "Fail where a vendor download was missing"],
        "s": ["samba : Samba running"],
    }
    assert run.vendor_blocked == ["k"]
    assert run.real_failures == {"s": ["samba : Samba running"]}
    assert run.messages["k"] == ["Request failed", "p4d could not be downloaded"]
    assert run.why() == "s: samba : Samba running: boom"  # the reason, where only the test's message is seen
    assert run.changed == 1


def test_secrets_folder_is_private_whatever_the_umask(tmp_path):
    path = tmp_path / "new" / "deeper" / "secrets.yml"
    old = os.umask(0)
    try:
        assert host_secrets.main(["generate", "-o", str(path)]) == 0
    finally:
        os.umask(old)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    assert stat.S_IMODE((tmp_path / "new").stat().st_mode) == 0o700
