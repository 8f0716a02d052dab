"""Is a lab guest up? Its sshd answers on the address the stack file gave it.

The lab's addresses are static (cloud-init writes them from the stack file), so the VM provider does not ask
PVE's guest agent where the guest is: it waits until the guest's sshd sends its banner on that address, which
is also exactly what the next stage (Ansible) needs. Chosen over cloud-init vendor data that installs
qemu-guest-agent because, on a real PVE, that needs
  * a snippet on a storage with content 'snippets', which the PVE API cannot upload (upload takes iso, vztmpl
    and import only): the program would need root SSH to the PVE node besides the API token;
  * a package mirror reachable at first boot, before Ansible set anything up;
while waiting for SSH needs neither, and the token loses VM.GuestAgent.Audit (VM.Monitor on PVE 8).
On Debian's cloud image sshd starts after cloud-init's network stage wrote the keys and the address, so a
banner means the admin user can log in. The agent is still enabled in the VM config: Ansible's `common` role
installs it, and PVE then uses it for clean shutdowns.

RENDERLAB_GUEST_SSH maps guest addresses to where their sshd is reached instead, for a workstation that reaches
the lab through port forwards, and for the tests (whose guests are fakes on loopback):
  RENDERLAB_GUEST_SSH="10.20.0.11=127.0.0.1:40011,10.20.0.12=127.0.0.1:40012"
"""

from __future__ import annotations

import ipaddress
import os
import socket
import time
from collections.abc import Callable

from infra.proxmox.client import ProxmoxError, Timeout

ENDPOINTS_ENV = "RENDERLAB_GUEST_SSH"


def endpoints(text: str | None = None) -> dict[str, tuple[str, int]]:
    """RENDERLAB_GUEST_SSH parsed: guest address -> (host, port)."""
    text = os.environ.get(ENDPOINTS_ENV, "") if text is None else text
    found: dict[str, tuple[str, int]] = {}
    for entry in filter(None, (e.strip() for e in text.split(","))):
        address, _, target = entry.partition("=")
        host, _, port = target.rpartition(":")
        try:
            ipaddress.IPv4Address(address)
            number = int(port)
            if not host or not 0 < number < 65536:
                raise ValueError
        except ValueError:
            raise ProxmoxError(
                f"{ENDPOINTS_ENV} entry {entry!r} is not ADDRESS=HOST:PORT (e.g. 10.20.0.11=127.0.0.1:40011)"
            ) from None
        found[address] = (host, number)
    return found


def ssh_banner(address: str, timeout: float = 3.0) -> str | None:
    """The SSH identification line the guest's sshd sends, or None when nothing SSH answers there."""
    host, port = endpoints().get(address, (address, 22))
    try:
        with socket.create_connection((host, port), timeout=timeout) as sock:
            sock.settimeout(timeout)
            data = b""
            while b"\n" not in data and len(data) < 256:
                chunk = sock.recv(256)
                if not chunk:
                    break
                data += chunk
    except OSError:
        return None
    line = data.split(b"\n", 1)[0].strip()
    return line.decode("ascii", "replace") if line.startswith(b"SSH-") else None


def wait_ssh(
    address: str,
    what: str,
    timeout: float,
    poll: float,
    sleep: Callable[[float], None] = time.sleep,
) -> str:
    """Wait until the guest's sshd answers on `address`; return its banner or raise Timeout."""
    deadline = time.monotonic() + timeout
    while True:
        banner = ssh_banner(address, timeout=min(5.0, max(poll, 0.5)))
        if banner:
            return banner
        if time.monotonic() > deadline:
            raise Timeout(
                f"{what}: no SSH answer on {address}:22 after {timeout:.0f}s. Check the VM's console in PVE "
                "(cloud-init sets the address), that this machine routes to the lab network, and that the "
                "address is free on the bridge"
            )
        sleep(poll)
