"""Opt-in lanes against real endpoints; each skips with the reason when its environment is not set.

Real Proxmox VE (creates one small VM from an existing template, checks it, deletes it):
    PROXMOX_API_TOKEN=<uuid> RENDERLAB_PVE_ENDPOINT=https://pve:8006 RENDERLAB_PVE_TOKEN_ID=user@pve!name \
    RENDERLAB_PVE_NODE=pve RENDERLAB_PVE_TEMPLATE=9000 RENDERLAB_PVE_VMID=990 RENDERLAB_PVE_STORAGE=local-lvm \
    RENDERLAB_PVE_BRIDGE=vmbr0 RENDERLAB_PVE_ADDRESS=10.20.0.99/24 RENDERLAB_PVE_GATEWAY=10.20.0.1 \
    RENDERLAB_PVE_SSH_KEY="ssh-ed25519 AAAA..." [RENDERLAB_PVE_CA_FILE=ca.pem] pytest -m optin tests/infra
Real cluster (server-side dry run of every cluster-layer object; nothing is changed):
    KUBECONFIG=~/.kube/renderlab pytest -m optin tests/infra
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from pulumi.dynamic import Config, ConfigureRequest

from infra import manifests
from infra.proxmox.vm import ProxmoxVmProvider
from renderlab.lab.config import load
from tests.example_stack import TEST_KEY
from tests.infra.conftest import FAST, TEMPLATE, TOKEN_ID, TOKEN_SECRET

ROOT = Path(__file__).resolve().parents[2]

PVE_VARS = (
    "PROXMOX_API_TOKEN",
    "RENDERLAB_PVE_ENDPOINT",
    "RENDERLAB_PVE_TOKEN_ID",
    "RENDERLAB_PVE_NODE",
    "RENDERLAB_PVE_TEMPLATE",
    "RENDERLAB_PVE_VMID",
    "RENDERLAB_PVE_STORAGE",
    "RENDERLAB_PVE_BRIDGE",
    "RENDERLAB_PVE_ADDRESS",
    "RENDERLAB_PVE_GATEWAY",
    "RENDERLAB_PVE_SSH_KEY",
)


@pytest.mark.optin
def test_real_proxmox_create_and_delete_one_small_vm():
    missing = [v for v in PVE_VARS if not os.environ.get(v)]
    if missing:
        pytest.skip(
            f"no real Proxmox endpoint configured: set {', '.join(missing)} (see this file's docstring)"
        )
    pve_lane(os.environ)


def test_the_proxmox_lane_itself_against_fakepve(pve, fakepve_cafile):
    """The lane's own code, pointed at the fake, so a broken lane is caught without a real PVE."""
    env = {
        "PROXMOX_API_TOKEN": TOKEN_SECRET,
        "RENDERLAB_PVE_ENDPOINT": pve.url,
        "RENDERLAB_PVE_TOKEN_ID": TOKEN_ID,
        "RENDERLAB_PVE_NODE": "pve1",
        "RENDERLAB_PVE_TEMPLATE": str(TEMPLATE),
        "RENDERLAB_PVE_VMID": "990",
        "RENDERLAB_PVE_STORAGE": "local-lvm",
        "RENDERLAB_PVE_BRIDGE": "vmbr0",
        "RENDERLAB_PVE_ADDRESS": "10.20.0.99/24",
        "RENDERLAB_PVE_GATEWAY": "10.20.0.1",
        "RENDERLAB_PVE_SSH_KEY": f"ssh-ed25519 {TEST_KEY} you@host",
        "RENDERLAB_PVE_CA_FILE": fakepve_cafile,
    }
    assert set(PVE_VARS) <= set(env)
    pve_lane(env, FAST)
    assert pve.vm(990) is None
    assert any(m == "POST" and p.endswith(f"/qemu/{TEMPLATE}/clone") for m, p, _ in pve.requests)
    assert any(m == "DELETE" and p.endswith("/qemu/990") for m, p, _ in pve.requests)


def pve_lane(env, timing=None) -> None:
    props = {
        "endpoint": env["RENDERLAB_PVE_ENDPOINT"],
        "token_id": env["RENDERLAB_PVE_TOKEN_ID"],
        "verify_tls": env.get("RENDERLAB_PVE_VERIFY_TLS", "1") != "0",
        "ca_file": env.get("RENDERLAB_PVE_CA_FILE"),
        "node": env["RENDERLAB_PVE_NODE"],
        "vmid": int(env["RENDERLAB_PVE_VMID"]),
        "name": "renderlab-optin",
        "template_vmid": int(env["RENDERLAB_PVE_TEMPLATE"]),
        "storage": env["RENDERLAB_PVE_STORAGE"],
        "bridge": env["RENDERLAB_PVE_BRIDGE"],
        "cores": 1,
        "memory_mib": 1024,
        "disk_gib": int(env.get("RENDERLAB_PVE_DISK_GIB", "4")),
        "address": env["RENDERLAB_PVE_ADDRESS"],
        "gateway": env["RENDERLAB_PVE_GATEWAY"],
        "dns": [env.get("RENDERLAB_PVE_DNS", env["RENDERLAB_PVE_GATEWAY"])],
        "search_domain": env.get("RENDERLAB_PVE_SEARCH", "lab.internal"),
        "ssh_user": "renderlab",
        "ssh_keys": [env["RENDERLAB_PVE_SSH_KEY"]],
        "tags": ["renderlab", "optin"],
    }
    provider = ProxmoxVmProvider(timing)
    # The token arrives as `pulumi up` hands it over: through configure, from the stack config.
    provider.configure(
        ConfigureRequest(Config({"renderlab:proxmox_api_token": env["PROXMOX_API_TOKEN"]}, "renderlab"))
    )
    created = provider.create(props)
    try:
        assert created.outs["ipv4"] == props["address"].split("/")[0]
        assert provider.diff(created.id, created.outs, props).changes is False
    finally:
        provider.delete(created.id, created.outs)
    assert provider.read(created.id, created.outs).id is None


@pytest.mark.optin
def test_real_cluster_accepts_the_cluster_layer():
    kubeconfig = os.environ.get("KUBECONFIG")
    if not kubeconfig or not Path(kubeconfig).is_file():
        pytest.skip("no cluster configured: set KUBECONFIG to the lab's kubeconfig file")
    from kubernetes import client, config, utils

    config.load_kube_config(kubeconfig)
    api = client.ApiClient()
    lab = load(ROOT / "Pulumi.example.yaml")
    objects = manifests.all_objects(lab, dict.fromkeys(manifests.SECRET_INPUTS, "dry-run"))
    namespaces = {o["metadata"]["name"] for o in objects["namespace.yaml"]}
    existing = {n.metadata.name for n in client.CoreV1Api(api).list_namespace().items}
    checked = 0
    for objs in objects.values():
        for obj in objs:
            if obj["metadata"].get("namespace") in namespaces - existing:
                continue  # a dry run cannot create into a namespace that does not exist yet
            utils.create_from_dict(api, obj, dry_run="All")
            checked += 1
    assert checked >= len(objects["namespace.yaml"])
