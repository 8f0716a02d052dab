"""Fixtures for the infra tests: a fake PVE (fakepve over real HTTPS) with a template and an API token."""

from __future__ import annotations

import re
import selectors
import socket
import threading
import time
import urllib.parse
from collections.abc import Iterator

import pytest
from fakepve import schema as pve_schema

from infra.proxmox.client import Timing
from infra.proxmox.guest import ENDPOINTS_ENV

TOKEN_ID = "renderlab@pve!pulumi"
TOKEN_SECRET = "5f0c1d2e-0000-4000-8000-123456789abc"
TEMPLATE = 9000
# Every address a test gives a VM: each gets a fake guest sshd on loopback.
DEFAULT_GUEST_ADDRESSES = tuple(f"10.20.0.{n}" for n in range(2, 100))
FAST = Timing(
    attempts=5,
    backoff=0.01,
    backoff_max=0.05,
    poll=0.01,
    task_timeout=10,
    lock_timeout=5,
    boot_timeout=5,
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


class Guests:
    """Plays the lab's guests as a stock Debian cloud image boots them: cloud-init configures the address and
    sshd answers on it; qemu-guest-agent is NOT there until the guest installed it (`install_agent`, what
    Ansible's `common` role does), so until then PVE answers 500 "QEMU guest agent is not running", as a real
    PVE does (fakepve's own answer while vm.agent is None). `strict=False` is the old, kinder fake whose
    agents answer from the first boot (kept only to show what it hid).

    Each guest address gets a loopback port (`env`: RENDERLAB_GUEST_SSH): while a VM made by the provider
    runs with that address, the port sends an SSH banner; otherwise it closes the connection at once, as a
    host that is down would not answer. `enabled = False` holds every guest in its boot (no SSH, no agent)."""

    def __init__(self, pve, addresses=DEFAULT_GUEST_ADDRESSES, strict: bool = True):
        self.pve = pve
        self.strict = strict
        self.enabled = True
        self.banners: dict[str, int] = {}  # address -> connections answered with a banner
        self._sockets: dict[socket.socket, str] = {}
        for address in addresses:
            sock = socket.socket()
            sock.bind(("127.0.0.1", 0))
            sock.listen(16)
            sock.setblocking(False)
            self._sockets[sock] = address
        self.env = ",".join(f"{a}=127.0.0.1:{s.getsockname()[1]}" for s, a in self._sockets.items())
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=t, daemon=True) for t in (self._agents, self._sshd)]
        for thread in self._threads:
            thread.start()

    def install_agent(self, vmid: int) -> None:
        """The guest installed and started qemu-guest-agent (until it is recreated)."""
        self.pve.vm(vmid)._renderlab_agent_installed = True

    def _booted(self, vm) -> bool:
        return self.enabled and vm.status == "running" and not vm.template and "ipconfig0" in vm.config

    def _agents(self) -> None:
        while not self._stop.is_set():
            for vm in list(self.pve.vms):
                if vm.template or "ipconfig0" not in vm.config:
                    continue  # not made by the provider: a test drives its agent by hand
                installed = getattr(vm, "_renderlab_agent_installed", False) or not self.strict
                vm.agent = {"interfaces": _interfaces(vm)} if self._booted(vm) and installed else None
            time.sleep(0.005)

    def _guest_at(self, address: str):
        for vm in list(self.pve.vms):
            if self._booted(vm) and re.search(rf"ip={re.escape(address)}/", str(vm.config.get("ipconfig0"))):
                return vm
        return None

    def _sshd(self) -> None:
        with selectors.DefaultSelector() as sel:
            for sock in self._sockets:
                sel.register(sock, selectors.EVENT_READ)
            while not self._stop.is_set():
                for key, _ in sel.select(0.05):
                    try:
                        conn, _ = key.fileobj.accept()
                    except BlockingIOError:
                        continue
                    address = self._sockets[key.fileobj]
                    with conn:
                        if self._guest_at(address) is not None:
                            self.banners[address] = self.banners.get(address, 0) + 1
                            conn.sendall(b"SSH-2.0-OpenSSH_9.2p1 Debian-2+deb12u3\r\n")

    def stop(self) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(2)
        for sock in self._sockets:
            sock.close()


@pytest.fixture
def pve(fakepve, monkeypatch, tmp_path) -> Iterator:
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
    guests = Guests(fakepve)
    monkeypatch.setenv(ENDPOINTS_ENV, guests.env)
    # The VM provider forgets a recreated VM's host keys in the lab's known_hosts: never the user's here.
    monkeypatch.setenv("RENDERLAB_KNOWN_HOSTS", str(tmp_path / "known_hosts"))
    fakepve.guests = guests
    try:
        yield fakepve
    finally:
        guests.stop()


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
