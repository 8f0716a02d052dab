"""The engine lane: the real Pulumi CLI runs the lab's program against fakepve over HTTPS (TLS verified
against fakepve's CA), with a file:// backend and a passphrase-encrypted stack.

One stack goes through the steps in order (each test is one step and needs the ones before it):
up -> no-change preview -> in-place update -> replace -> drift (refresh, up) -> inventory -> secrets
in state -> faults (500s, lock timeouts, a failed create) -> destroy -> an up interrupted by Ctrl-C and
the next up -> destroy. Needs the engine: `make tools`.
"""

from __future__ import annotations

import re
import subprocess
import time
from pathlib import Path

import pytest
import yaml

from infra.proxmox.guest import ENDPOINTS_ENV
from renderlab.lab import ansible_unsafe, lab_ca
from renderlab.lab import host_secrets as hosts_secrets
from renderlab.lab.config import load
from renderlab.lab.host_secrets import SERVICE_SECRETS
from renderlab.lab.inventory import inventory
from tests.example_stack import own
from tests.infra.conftest import TOKEN_ID, TOKEN_SECRET, Guests
from tests.infra.engine import ROOT, Engine, missing_tools, ops

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(missing_tools() is not None, reason=str(missing_tools())),
]

NODE = "pve"
TEMPLATE = 9000
VMIDS = {"control-plane": 211, "worker": 212, "storage": 213, "perforce": 214, "airflow": 215}
LOCK_TIMEOUT = "can't lock file '/var/lock/qemu-server/lock-{vmid}.conf' - got timeout"


class Lane:
    """The shared stack, fakepve and what the steps learned."""

    def __init__(self, engine: Engine, pve, agents: Guests, tmp: Path):
        self.engine, self.pve, self.agents, self.tmp = engine, pve, agents, tmp
        self.failed: str | None = None

    def require(self) -> None:
        if self.failed:
            pytest.skip(f"an earlier step of the engine lane failed: {self.failed}")

    def lab_config(self):
        """The stack's config through the lab's own model (what the program reads)."""
        path = self.tmp / "stack-for-model.yaml"
        config = dict(self.engine.config())
        config["renderlab:proxmox_api_token"] = {"secure": "v1:engine-lane"}
        path.write_text(yaml.safe_dump({"config": config}))
        return load(path)

    def vms(self) -> dict[int, object]:
        """The VMs (not templates) fakepve holds."""
        return {vm.vmid: vm for vm in self.pve.vms if not vm.template}


@pytest.fixture(scope="module")
def lane(fakepve_session, fakepve_cafile, tmp_path_factory):
    pve = fakepve_session
    pve.apitokens[TOKEN_ID] = TOKEN_SECRET
    pve.add_node(NODE)
    pve.storages["local"]["content"] = "iso,vztmpl,backup,import"
    # Strict guests: no guest agent until the guest installs it, as on a stock cloud image (the VMs must come
    # up on SSH alone); their sshd is reached through RENDERLAB_GUEST_SSH.
    agents = Guests(pve, strict=True)
    tmp = tmp_path_factory.mktemp("engine")
    engine = Engine(tmp)
    engine.env[ENDPOINTS_ENV] = agents.env
    engine.env["RENDERLAB_KNOWN_HOSTS"] = str(tmp / "known_hosts")  # the providers forget recreated VMs' keys
    example = own()["config"]  # the example with the lane's own token and key
    config = {k: v for k, v in example.items() if k != "renderlab:proxmox_api_token"}
    px = config["renderlab:proxmox"]
    px.update(endpoint=pve.url, ca_file=fakepve_cafile, verify_tls=True, node=NODE)
    px["template"]["image_sha512"] = "b" * 128  # no SHA512SUMS download from here
    engine.init(config, TOKEN_SECRET)
    lane = Lane(engine, pve, agents, tmp)
    yield lane
    agents.enabled = True
    engine.run("destroy", "--yes", "--skip-preview", check=False, timeout=300)
    agents.stop()
    total = sum(t for _, t in engine.timings)
    print(f"\nengine lane: {len(engine.timings)} pulumi commands, {total:.0f} s in the CLI")


@pytest.fixture
def step(lane, request):
    """The lane for one step; a failed step makes the later ones skip (they build on it)."""
    lane.require()
    failed_before = request.session.testsfailed
    yield lane
    if request.session.testsfailed > failed_before:  # the call's report is in before teardown
        lane.failed = request.node.name


def assert_lab(lane: Lane, config=None) -> None:
    """fakepve holds exactly the configured VMs (and the template), configured as the stack says."""
    config = config or lane.lab_config()
    vms = lane.vms()
    assert sorted(vms) == sorted(h.vmid for h in config.hosts.values()), "fakepve holds other VMs"
    tpl = lane.pve.vm(TEMPLATE)
    assert tpl is not None and tpl.template and tpl.node == NODE
    for name, host in config.hosts.items():
        vm = vms[host.vmid]
        cfg = vm.config
        assert vm.name == name and vm.node == NODE and vm.status == "running"
        assert int(cfg["cores"]) == host.cores, name
        assert int(str(cfg["memory"]).split("=")[-1]) == host.memory_mib, name
        # fakepve models no qemu disk resize (the call is schema-checked, the size not kept): the disk is
        # right when its size says so or the provider asked PVE to grow it to the configured size.
        resized = [
            body
            for method, path, body in lane.pve.requests
            if method == "PUT" and path.endswith(f"/qemu/{host.vmid}/resize")
        ]
        assert re.search(rf"size={host.disk_gib}G\b", cfg["scsi0"]) or (
            resized and f"size={host.disk_gib}G" in resized[-1].decode()
        ), (name, cfg["scsi0"], resized[-1:])
        assert f"bridge={config.proxmox.bridge}" in cfg["net0"], (name, cfg["net0"])
        assert (
            cfg["ipconfig0"] == f"ip={config.address(name)}/{config.prefix_len},gw={config.network.gateway}"
        )
        assert cfg["ciuser"] == config.ssh.admin_user
        assert config.ssh.public_keys[0].split()[1] in str(cfg["sshkeys"])
        assert cfg["nameserver"] == " ".join(str(d) for d in config.network.dns)
        assert cfg["searchdomain"] == config.network.search_domain


def test_up_builds_the_template_the_five_vms_and_the_secrets(step):
    engine = step.engine
    engine.up()
    assert_lab(step)
    types = sorted(
        r["type"].rsplit(":", 1)[-1] for r in engine.resources() if r["type"].startswith("pulumi-python")
    )
    assert types == ["CloudInitTemplate"] + ["GeneratedSecret"] * len(SERVICE_SECRETS) + ["ProxmoxVm"] * 5
    out = engine.outputs()
    config = step.lab_config()
    assert out["addresses"] == {n: config.address(n) for n in config.hosts}
    assert out["host_secrets"] == "[secret]"
    # Strict guests: the VMs came up with no guest agent, and nothing asked one.
    assert not [path for _, path, _ in step.pve.requests if "/agent/" in path]


def test_preview_right_after_up_has_no_changes(step):
    step.engine.run("preview", "--expect-no-changes")


def test_cores_change_updates_the_vm_in_place(step):
    engine, pve = step.engine, step.pve
    before = pve.vm(VMIDS["worker"])
    engine.set_config("renderlab:hosts.worker.cores", 6)
    assert ops(engine.preview()) == {"worker": "update"}
    engine.up()
    after = pve.vm(VMIDS["worker"])
    assert after is before and after.config["cores"] in ("6", 6)
    assert_lab(step)
    engine.run("preview", "--expect-no-changes")


def test_vmid_or_node_change_replaces(step):
    engine, pve = step.engine, step.pve
    # The node is one value for the whole lab: every VM and the template would be replaced (preview only).
    engine.set_config("renderlab:proxmox.node", "pve1")
    planned = ops(engine.preview())
    assert planned == {**{n: "replace" for n in VMIDS}, "template": "replace"}
    engine.set_config("renderlab:proxmox.node", NODE)
    # A VMID is one VM's: that VM alone is replaced, the old one removed before the new one is made.
    engine.set_config("renderlab:hosts.storage.vmid", 223)
    assert ops(engine.preview()) == {"storage": "replace"}
    engine.up()
    assert pve.vm(213) is None and pve.vm(223) is not None
    assert_lab(step)


def test_refresh_shows_drift_and_up_repairs_it(step):
    engine, pve = step.engine, step.pve
    vm = pve.vm(VMIDS["control-plane"])
    vm.config["cores"] = "1"  # changed behind Pulumi's back (the PVE web UI, qm set ...)
    refreshed = engine.run("refresh", "--yes", "--skip-preview", "--diff")
    out = refreshed.stdout
    assert re.search(r"~ pulumi-python:dynamic/renderlab:ProxmoxVm: \(update\)\s+\[id=211\]", out), out[
        -3000:
    ]
    assert re.search(r"~ cores\s*: 4 => 1", out) and "~ 1 updated" in out, out[-3000:]
    assert ops(engine.preview()) == {"control-plane": "update"}
    engine.up()
    assert pve.vm(VMIDS["control-plane"]).config["cores"] in ("4", 4)
    engine.run("preview", "--expect-no-changes")


def test_inventory_output_is_the_ansible_inventory(step):
    engine = step.engine
    config = step.lab_config()
    got = engine.outputs()["inventory"]
    assert got == ansible_unsafe.mark(
        inventory(config)
    )  # every string marked unsafe for Ansible's templating
    assert {"control_plane", "worker", "storage", "perforce", "airflow"} <= set(got["all"]["children"])
    # `make lab-inventory` (run from the repo, as a user would) writes the same inventory.
    target = step.tmp / "inventory.yml"
    made = subprocess.run(
        ["make", "-s", "lab-inventory", f"STACK={engine.stack}", f"INVENTORY={target}"],
        cwd=ROOT,
        env=engine.env,
        check=False,
        capture_output=True,
        text=True,
    )
    assert made.returncode == 0, made.stdout + made.stderr
    assert yaml.safe_load(target.read_text()) == got


def test_state_holds_no_plaintext_secret(step):
    engine = step.engine
    secrets = engine.outputs(secrets=True)["host_secrets"]
    assert len(secrets) == len(hosts_secrets.SERVICE_SECRETS) and len(set(secrets.values())) == len(secrets)
    for key, value in secrets.items():
        spec = hosts_secrets.SERVICE_SECRETS[key]
        if spec.format == "fernet":
            assert hosts_secrets.is_fernet_key(value), key
        elif spec.format == "key32":
            assert hosts_secrets.is_key32(value), key
        elif spec.format == "lab_ca":
            lab_ca.load_ca(value)  # the key and its self-signed certificate, one PEM bundle
        else:
            assert re.fullmatch(rf"[A-Za-z0-9]{{{spec.length}}}", value), key
    state = engine.state_text() + engine.stack_file.read_text()
    assert "secure" in engine.stack_file.read_text() and "ciphertext" in state
    # Each secret whole, and of the lab CA each line of its private key (the certificate is public).
    for what, value in [("the Proxmox token", TOKEN_SECRET), *hosts_secrets.log_needles(secrets)]:
        assert value not in state, f"{what} is in the state or the stack file in plain text"


def test_api_faults_retry_or_fail_and_the_next_up_converges(step):
    engine, pve = step.engine, step.pve
    # PVE's config lock held elsewhere for a while: retried, the update goes through.
    vmid = VMIDS["perforce"]
    pve.fail(
        "PUT",
        f"/nodes/{NODE}/qemu/{vmid}/config",
        status=500,
        message=LOCK_TIMEOUT.format(vmid=vmid),
        times=2,
    )
    engine.set_config("renderlab:hosts.perforce.memory_mib", 6144)
    engine.up()
    assert str(pve.vm(vmid).config["memory"]).split("=")[-1] == "6144"
    # A plain 500 while a new VM starts: that up fails, the half-made VM is removed, the next up converges.
    pve.fail("POST", f"/nodes/{NODE}/qemu/225/status/start", status=500, message="Internal error", times=1)
    engine.set_config("renderlab:hosts.airflow.vmid", 225)
    failed = engine.up(check=False)
    # The whole output: the outputs' diff (the inventory grew) can push the error out of the tail.
    everything = (failed.stdout or "") + (failed.stderr or "")
    assert failed.returncode != 0 and "Internal error" in everything, engine.tail(failed)
    assert pve.vm(225) is None and pve.vm(215) is None
    engine.up()
    assert_lab(step)
    assert len(step.vms()) == 5
    engine.run("preview", "--expect-no-changes")


def test_destroy_leaves_nothing_the_stack_made(step):
    engine, pve = step.engine, step.pve
    engine.run("destroy", "--yes", "--skip-preview")
    assert step.vms() == {} and pve.vm(TEMPLATE) is None
    assert engine.resources() == []


def test_up_interrupted_by_ctrl_c_then_up_converges(step):
    engine, pve, agents = step.engine, step.pve, step.agents
    agents.enabled = False  # the guests "boot slowly": creates wait for their sshd
    proc = engine.start("up", "--yes", "--skip-preview")
    try:
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline and not any(vm.status == "running" for vm in step.vms().values()):
            assert proc.poll() is None, proc.stdout.read()[-3000:]
            time.sleep(0.2)
        assert any(vm.status == "running" for vm in step.vms().values()), "no VM started within 300 s"
        engine.interrupt(proc)
        time.sleep(2)
        agents.enabled = True  # the in-flight creates finish; pulumi then stops, the rest not started
        out, _ = proc.communicate(timeout=300)
    finally:
        agents.enabled = True
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode != 0, out[-3000:]
    made = set(step.vms())
    engine.up()
    assert_lab(step)
    vms = [r for r in engine.resources() if r["type"].endswith(":ProxmoxVm")]
    assert len(vms) == 5 and len({r["id"] for r in vms}) == 5
    assert made <= set(step.vms()), "a VM made before the interrupt was replaced instead of kept"
    engine.run("preview", "--expect-no-changes")
    engine.run("destroy", "--yes", "--skip-preview")
    assert step.vms() == {} and pve.vm(TEMPLATE) is None
