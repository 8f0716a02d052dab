"""Fixtures for the infra tests: a fake PVE (fakepve over real HTTPS) with a template and an API token."""

from __future__ import annotations

import re
import threading
import time
import urllib.parse
from collections.abc import Iterator

import pytest
from fakepve import schema as pve_schema

from infra.proxmox.client import Timing

TOKEN_ID = "renderlab@pve!pulumi"
TOKEN_SECRET = "5f0c1d2e-0000-4000-8000-123456789abc"
TEMPLATE = 9000
FAST = Timing(
    attempts=5,
    backoff=0.01,
    backoff_max=0.05,
    poll=0.01,
    task_timeout=10,
    lock_timeout=5,
    agent_timeout=5,
    http_timeout=10,
)


def _interfaces(vm) -> list[dict]:
    found = re.search(r"ip=([\d.]+)/(\d+)", str(vm.config.get("ipconfig0", "")))
    ifaces = [
        {
            "name": "lo",
            "hardware-address": "00:00:00:00:00:00",
            "ip-addresses": [{"ip-address": "127.0.0.1", "ip-address-type": "ipv4", "prefix": 8}],
        }
    ]
    addrs = [{"ip-address": "fe80::be24:11ff:fe00:1", "ip-address-type": "ipv6", "prefix": 64}]
    if found:
        addrs.insert(
            0, {"ip-address": found.group(1), "ip-address-type": "ipv4", "prefix": int(found.group(2))}
        )
    ifaces.append({"name": "eth0", "hardware-address": "bc:24:11:00:00:01", "ip-addresses": addrs})
    return ifaces


class GuestAgents:
    """Plays the guests' qemu-guest-agent: once a VM made by the provider runs, its agent reports the
    cloud-init address (as qemu-guest-agent does once cloud-init configured the network)."""

    def __init__(self, pve):
        self.pve = pve
        self.enabled = True
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            for vm in list(self.pve.vms):
                if vm.template or "ipconfig0" not in vm.config:
                    continue  # not made by the provider: a test drives its agent by hand
                if self.enabled and vm.status == "running":
                    vm.agent = {"interfaces": _interfaces(vm)}
                else:
                    vm.agent = None
            time.sleep(0.005)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(2)


@pytest.fixture
def pve(fakepve) -> Iterator:
    """fakepve with the API token and a cloud-init template (VMID 9000) on node pve1."""
    fakepve.apitokens[TOKEN_ID] = TOKEN_SECRET
    fakepve.add_vm(
        TEMPLATE,
        "debian-12-cloudinit",
        node="pve1",
        template=True,
        config={
            "scsi0": "local-lvm:base-9000-disk-0,size=3G",
            "ide2": "local-lvm:vm-9000-cloudinit,media=cdrom",
            "scsihw": "virtio-scsi-single",
            "boot": "order=scsi0",
            "net0": "virtio=BC:24:11:00:90:00,bridge=vmbr0",
            "serial0": "socket",
            "vga": "serial0",
            "agent": "enabled=1",
            "template": 1,
        },
    )
    fakepve.storages["local-lvm"].setdefault("volumes", {})["base-9000-disk-0"] = {
        "content": "images",
        "format": "raw",
        "size": 3 * 1024**3,
        "vmid": TEMPLATE,
        "ctime": 0,
    }
    agents = GuestAgents(fakepve)
    try:
        yield fakepve
    finally:
        agents.stop()


@pytest.fixture
def token_env(monkeypatch):
    monkeypatch.setenv("PROXMOX_API_TOKEN", TOKEN_SECRET)


def assert_schema_clean(pve):
    """Every request body the provider sent is accepted by PVE's API schema (parameters and types).
    Query-string parameters (GET, DELETE) are checked by the fake itself, which answers 400 otherwise."""
    api = pve_schema.load()
    checked = 0
    for method, path, body in pve.requests:
        rel = path.split("/api2/json", 1)[1]
        match = api.match("/".join(urllib.parse.unquote(s) for s in rel.split("/")))
        assert match is not None, f"{method} {path} is not in the PVE API"
        info = match.methods.get(method)
        assert info is not None, f"{method} is not a method of {match.template}"
        values = dict(urllib.parse.parse_qsl(body.decode())) if body else {}
        values.update(match.params)
        _, errors = pve_schema.validate(info.get("parameters"), values)
        assert not errors, f"{method} {path} {values}: {errors}"
        checked += 1
    assert checked > 5
