"""The VM provider against fakepve's stateful PVE API over real HTTPS (TLS verified with the fake's CA)."""

from __future__ import annotations

import json
import time
from urllib.parse import unquote

import pytest

from infra.proxmox.client import ProxmoxError, Pve, TaskFailed, Timeout
from infra.proxmox.vm import ProxmoxVmProvider, parse_spec
from tests.infra.conftest import FAST, TEMPLATE, TOKEN_ID, TOKEN_SECRET, assert_schema_clean

pytestmark = pytest.mark.usefixtures("token_env")


def spec(pve, cafile, **over):
    props = {
        "endpoint": pve.url,
        "token_id": TOKEN_ID,
        "verify_tls": True,
        "ca_file": cafile,
        "node": "pve1",
        "vmid": 211,
        "name": "control-plane",
        "template_vmid": TEMPLATE,
        "storage": "local-lvm",
        "bridge": "vmbr0",
        "cores": 2,
        "memory_mib": 4096,
        "disk_gib": 20,
        "address": "10.20.0.11/24",
        "gateway": "10.20.0.1",
        "dns": ["10.20.0.1"],
        "search_domain": "lab.internal",
        "ssh_user": "renderlab",
        "ssh_keys": ["ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAITestKey you@host"],
        "tags": ["renderlab", "control_plane"],
    }
    props.update(over)
    return props


def provider():
    return ProxmoxVmProvider(timing=FAST)


def test_create_diff_update_delete(pve, fakepve_cafile):
    p = provider()
    props = spec(pve, fakepve_cafile)
    created = p.create(props)
    assert created.id == "211"
    assert created.outs["ipv4"] == "10.20.0.11"
    vm = pve.vm(211)
    assert vm.status == "running" and vm.name == "control-plane"
    assert vm.config["cores"] == "2" and str(vm.config["memory"]) == "4096"
    assert vm.config["ipconfig0"] == "ip=10.20.0.11/24,gw=10.20.0.1"
    assert vm.config["ciuser"] == "renderlab" and "bridge=vmbr0" in vm.config["net0"]
    assert unquote(vm.config["sshkeys"]).strip() == props["ssh_keys"][0]
    assert vm.config["nameserver"] == "10.20.0.1" and vm.config["searchdomain"] == "lab.internal"
    assert "vm-211-disk" in vm.config["scsi0"]  # a full clone has its own disk
    resize = [(m, path, b) for m, path, b in pve.requests if path.endswith("/qemu/211/resize")]
    assert resize and b"size=20G" in resize[0][2] and b"disk=scsi0" in resize[0][2]

    # The same inputs (as Pulumi passes them back: outputs + the new inputs) diff empty.
    outs = dict(created.outs)
    same = p.diff(
        "211",
        outs,
        spec(
            pve,
            fakepve_cafile,
            ssh_keys=[" ssh-ed25519  AAAAC3NzaC1lZDI1NTE5AAAAITestKey you@host"],
            tags=["control_plane", "renderlab"],
        ),
    )
    assert same.changes is False and same.replaces == []

    # cores: updated in place, applied by a reboot (PVE keeps it pending on a running VM).
    new = spec(pve, fakepve_cafile, cores=4)
    d = p.diff("211", outs, new)
    assert d.changes is True and d.replaces == []
    updated = p.update("211", outs, new)
    assert updated.outs["cores"] == 4
    assert pve.vm(211).config["cores"] == "4" and not pve.vm(211).pending
    assert any(path.endswith("/qemu/211/status/reboot") for _, path, _ in pve.requests)

    # Node / VMID / template / storage changes and a smaller disk replace the VM.
    assert p.diff("211", updated.outs, spec(pve, fakepve_cafile, cores=4, storage="other")).replaces == [
        "storage"
    ]
    assert p.diff("211", updated.outs, spec(pve, fakepve_cafile, cores=4, disk_gib=10)).replaces == [
        "disk_gib"
    ]

    p.delete("211", updated.outs)
    assert pve.vm(211) is None
    assert not [v for v in pve.storages["local-lvm"].get("volumes", {}) if "211" in v]
    p.delete("211", updated.outs)  # already gone: done
    assert_schema_clean(pve)


def test_clone_lock_timeouts_are_retried(pve, fakepve_cafile):
    pve.fail("POST", f"/nodes/pve1/qemu/{TEMPLATE}/clone", error="config_lock_timeout", times=2)
    pve.fail("PUT", "/nodes/pve1/qemu/211/config", error="config_lock_timeout", times=1)
    created = provider().create(spec(pve, fakepve_cafile))
    assert created.id == "211" and pve.vm(211).status == "running"
    clones = [path for m, path, _ in pve.requests if m == "POST" and path.endswith("/clone")]
    assert len(clones) == 3


def test_task_error_surfaces_its_message_and_leaves_no_vm(pve, fakepve_cafile):
    pve.fail("POST", "/nodes/pve1/qemu/211/status/start", error="qemu_exited_code")
    with pytest.raises(TaskFailed, match="start VM 211 failed: QEMU exited with code 1"):
        provider().create(spec(pve, fakepve_cafile))
    assert pve.vm(211) is None
    assert any(m == "DELETE" and path.endswith("/qemu/211") for m, path, _ in pve.requests)


def test_failed_config_leaves_no_vm(pve, fakepve_cafile):
    pve.fail("PUT", "/nodes/pve1/qemu/211/config", 500, "unable to apply: something broke")
    with pytest.raises(Exception, match="something broke"):
        provider().create(spec(pve, fakepve_cafile))
    assert pve.vm(211) is None


def test_a_stock_cloud_image_comes_up_without_a_guest_agent(pve, fakepve_cafile):
    """The guests have no qemu-guest-agent until Ansible installs it (strict fake, as a real PVE answers):
    create and update finish on the guest's SSH answer and never ask the agent."""
    p = provider()
    created = p.create(spec(pve, fakepve_cafile))
    assert created.outs["ipv4"] == "10.20.0.11"
    p.update("211", created.outs, spec(pve, fakepve_cafile, address="10.20.0.21/24"))
    assert pve.guests.banners.get("10.20.0.11") and pve.guests.banners.get("10.20.0.21")
    assert not [path for _, path, _ in pve.requests if "/agent/" in path]
    client = Pve(parse_spec(spec(pve, fakepve_cafile)).connection, TOKEN_SECRET, FAST)
    with pytest.raises(Exception, match="QEMU guest agent is not running"):
        client.get("nodes/pve1/qemu/211/agent/network-get-interfaces")
    pve.guests.install_agent(211)  # what Ansible's common role does; PVE then sees the agent
    time.sleep(0.1)
    assert client.get("nodes/pve1/qemu/211/agent/network-get-interfaces")["result"]


def test_a_guest_that_never_answers_ssh_times_out_and_is_removed(pve, fakepve_cafile):
    pve.guests.enabled = False  # stuck in its boot
    with pytest.raises(Timeout, match=r"VM 211 \(control-plane\): no SSH answer on 10.20.0.11:22 after 5s"):
        provider().create(spec(pve, fakepve_cafile))
    assert pve.vm(211) is None


def test_an_address_that_already_answers_ssh_is_refused(pve, fakepve_cafile):
    """Another machine on the address would pass the SSH wait for this VM: refused before the start."""
    p = provider()
    p.create(spec(pve, fakepve_cafile))
    with pytest.raises(
        ProxmoxError, match=r"10.20.0.11 already answers SSH \(SSH-2.0-OpenSSH.*network.hosts"
    ):
        p.create(spec(pve, fakepve_cafile, vmid=212, name="worker"))
    assert pve.vm(212) is None and pve.vm(211).status == "running"


def test_existing_vmid_is_refused_and_left_alone(pve, fakepve_cafile):
    pve.add_vm(211, "someone-else", node="pve1")
    with pytest.raises(ProxmoxError, match="VMID 211 already exists"):
        provider().create(spec(pve, fakepve_cafile))
    assert pve.vm(211).name == "someone-else"


def test_bad_inputs_fail_check_with_clear_messages(pve, fakepve_cafile):
    result = provider().check({}, spec(pve, fakepve_cafile, cores=0))
    reasons = {f.property: f.reason for f in result.failures}
    assert "greater than or equal to 1" in reasons["cores"]
    result = provider().check({}, spec(pve, fakepve_cafile, gateway="10.99.0.1"))
    assert [f.reason for f in result.failures] == [
        "gateway 10.99.0.1 is outside the VM's network 10.20.0.0/24"
    ]
    assert provider().check({}, spec(pve, fakepve_cafile)).failures == []


def test_tls_is_verified(pve):
    """Without the fake's CA the connection is refused: TLS verification is on by default."""
    p = provider()
    with pytest.raises(ProxmoxError, match="SSLError|certificate"):
        p.create(spec(pve, None))
    assert pve.requests == []  # refused at the handshake, and not retried


def test_token_never_in_outputs(pve, fakepve_cafile):
    created = provider().create(spec(pve, fakepve_cafile))
    assert TOKEN_SECRET not in json.dumps(created.outs)
    assert parse_spec(created.outs).vmid == 211


def test_wrong_token_is_a_clear_error(pve, fakepve_cafile, monkeypatch):
    monkeypatch.setenv("PROXMOX_API_TOKEN", "wrong")
    client = Pve(parse_spec(spec(pve, fakepve_cafile)).connection, "wrong", FAST)
    with pytest.raises(Exception, match="401"):
        client.get("version")


def test_address_change_is_applied_by_a_reboot_and_reported(pve, fakepve_cafile):
    p = provider()
    created = p.create(spec(pve, fakepve_cafile))
    new = spec(pve, fakepve_cafile, address="10.20.0.21/24", dns=["10.20.0.1", "10.20.0.2"])
    assert p.diff("211", created.outs, new).replaces == []
    updated = p.update("211", created.outs, new)
    assert updated.outs["ipv4"] == "10.20.0.21"
    vm = pve.vm(211)
    assert (
        vm.config["ipconfig0"] == "ip=10.20.0.21/24,gw=10.20.0.1"
        and vm.config["nameserver"] == "10.20.0.1 10.20.0.2"
    )
    assert not vm.pending


def test_stopped_vm_is_started_by_update(pve, fakepve_cafile):
    p = provider()
    created = p.create(spec(pve, fakepve_cafile))
    pve.vm(211).status = pve.vm(211).qmpstatus = "stopped"
    updated = p.update("211", created.outs, spec(pve, fakepve_cafile, memory_mib=8192))
    assert pve.vm(211).status == "running" and str(pve.vm(211).config["memory"]) == "8192"
    assert updated.outs["memory_mib"] == 8192


def test_connection_change_is_an_update_not_a_replace(pve, fakepve_cafile):
    old = spec(pve, fakepve_cafile)
    d = provider().diff("211", old, {**old, "token_id": "other@pve!pulumi"})
    assert d.changes is True and d.replaces == []


def test_refresh_reads_drift_and_gone(pve, fakepve_cafile):
    p = provider()
    created = p.create(spec(pve, fakepve_cafile))
    pve.vm(211).config["cores"] = "6"  # changed by hand in the PVE UI
    read = p.read("211", created.outs)
    assert read.outs["cores"] == 6
    assert p.diff("211", read.outs, spec(pve, fakepve_cafile)).changes is True
    p.delete("211", created.outs)
    assert p.read("211", created.outs).id is None


def test_vmid_taken_during_create_is_never_destroyed(pve, fakepve_cafile, monkeypatch):
    """Another client takes the VMID between our check and the clone: PVE refuses the clone, and the
    cleanup must leave that VM alone."""
    pve.add_vm(211, "someone-else", node="pve1")
    real = Pve.vm_config
    calls = []

    def racing(self, node, vmid):
        calls.append(vmid)
        return None if len(calls) == 1 else real(self, node, vmid)

    monkeypatch.setattr(Pve, "vm_config", racing)
    with pytest.raises(Exception, match="already exists"):
        provider().create(spec(pve, fakepve_cafile))
    assert pve.vm(211) is not None and pve.vm(211).name == "someone-else"


def test_a_created_vm_forgets_its_address_in_the_labs_known_hosts(pve, fakepve_cafile, tmp_path):
    """A recreated VM has new host keys: the program that recreated it drops the old ones (first contact
    records the new, make lab-known-hosts), so ssh does not refuse it as an impostor."""
    from renderlab.lab import known_hosts

    path = tmp_path / "known_hosts"  # RENDERLAB_KNOWN_HOSTS (the pve fixture)
    path.write_text("10.20.0.11 ssh-ed25519 AAAAold\n10.20.0.12 ssh-ed25519 AAAAother\n")
    provider().create(spec(pve, fakepve_cafile))
    assert path.read_text() == "10.20.0.12 ssh-ed25519 AAAAother\n"
    scanned = known_hosts.record(
        ["10.20.0.11", "10.20.0.12"], path, scan=lambda a: [f"{a} ssh-ed25519 AAAAnew"]
    )
    assert scanned == ["10.20.0.11"]  # first contact only; the known one is kept
    assert known_hosts.known(path) == {"10.20.0.11", "10.20.0.12"}
