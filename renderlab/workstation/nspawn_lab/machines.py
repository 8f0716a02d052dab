"""One booted `systemd-nspawn -b` container per lab host: prepare its tree, boot it, stop it."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from renderlab.workstation.nspawn_lab import cluster_node as cluster_node_settings
from renderlab.workstation.nspawn_lab.options import LabError


@dataclass
class Machine:
    name: str  # the inventory host name (also its hostname)
    machine: str  # the nspawn machine name (prefixed, unique across labs)
    address: str
    directory: Path
    pid: int | None = None
    binds: tuple[str, ...] = ()  # nspawn --bind arguments (share_folder), kept for a re-boot

    def as_state(self) -> dict:
        return {
            "name": self.name,
            "machine": self.machine,
            "address": self.address,
            "directory": str(self.directory),
            "pid": self.pid,
            "binds": list(self.binds),
        }


def prepare(
    m: Machine, rootfs: Path, *, prefixlen: int, gateway: str, dns: list[str], admin: str, pubkey: str
):
    """Copy the rootfs and give it what cloud-init gives a lab VM: hostname, static address, admin + key."""
    subprocess.run(["cp", "-a", "--reflink=auto", str(rootfs), str(m.directory)], check=True)
    root = m.directory
    (root / "etc/hostname").write_text(f"{m.name}\n")
    (root / "etc/hosts").write_text(f"127.0.0.1 localhost\n127.0.1.1 {m.name}\n")
    (root / "etc/resolv.conf").unlink(missing_ok=True)
    (root / "etc/resolv.conf").write_text("".join(f"nameserver {d}\n" for d in dns))
    dns_lines = "".join(f"DNS={d}\n" for d in dns)
    (root / "etc/systemd/network/10-host0.network").write_text(
        f"[Match]\nName=host0\n\n[Network]\nAddress={m.address}/{prefixlen}\nGateway={gateway}\n{dns_lines}"
    )
    subprocess.run(["ssh-keygen", "-q", "-A", "-f", str(root)], check=True)
    subprocess.run(
        ["chroot", str(root), "useradd", "--create-home", "--shell", "/bin/bash", "--groups", "sudo", admin],
        check=True,
    )
    ssh_dir = root / "home" / admin / ".ssh"
    ssh_dir.mkdir(mode=0o700)
    (ssh_dir / "authorized_keys").write_text(pubkey.strip() + "\n")
    (ssh_dir / "authorized_keys").chmod(0o600)
    subprocess.run(
        ["chroot", str(root), "chown", "-R", f"{admin}:{admin}", f"/home/{admin}/.ssh"], check=True
    )
    sudoers = root / "etc/sudoers.d/90-lab-admin"
    sudoers.write_text(f"{admin} ALL=(ALL) NOPASSWD:ALL\n")
    sudoers.chmod(0o440)
    # Trust the CAs this machine adds to Debian's bundle (e.g. an egress proxy's), so HTTPS from the hosts
    # (pip in the airflow role) verifies exactly as it does here.
    extra_cas = sorted(Path("/usr/local/share/ca-certificates").glob("*.crt"))
    for ca in extra_cas:
        shutil.copy2(ca, root / "usr/local/share/ca-certificates" / ca.name)
    if extra_cas:
        subprocess.run(["chroot", str(root), "update-ca-certificates"], check=True, capture_output=True)


def boot(m: Machine, bridge: str, log_dir: Path, *, cluster_node: bool = False) -> None:
    cmd = [
        "systemd-nspawn",
        "--quiet",
        "--boot",
        f"--directory={m.directory}",
        f"--machine={m.machine}",
        f"--network-bridge={bridge}",
        # No machined and no systemd as PID 1 here: stay in our own cgroup, register nowhere.
        "--register=no",
        "--keep-unit",
        "--resolv-conf=off",
        "--timezone=off",
        "--link-journal=no",
        "--console=read-only",
        *(cluster_node_settings.ARGS if cluster_node else []),
        *m.binds,
    ]
    with open(log_dir / f"{m.machine}.console.log", "ab") as out:
        proc = subprocess.Popen(
            cmd,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            env={**os.environ, "SYSTEMD_COLORS": "0"},
        )
    m.pid = proc.pid


def is_ours(m: Machine) -> bool:
    """Is m.pid still the systemd-nspawn we started for this machine (not a recycled pid)?"""
    if not m.pid:
        return False
    try:
        cmdline = Path(f"/proc/{m.pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return False
    return (
        bool(cmdline)
        and cmdline[0].endswith(b"systemd-nspawn")
        and f"--machine={m.machine}".encode() in cmdline
    )


def running_under(machines_dir: Path) -> list[Machine]:
    """nspawn processes whose tree lies under machines_dir: ours even if their pid never reached the state."""
    found = []
    prefix = f"--directory={machines_dir}/".encode()
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            args = cmdline.read_bytes().split(b"\0")
        except OSError:
            continue  # exited meanwhile
        if not args[0].endswith(b"systemd-nspawn"):
            continue
        directory = next((a for a in args if a.startswith(prefix)), None)
        machine = next((a for a in args if a.startswith(b"--machine=")), None)
        if directory and machine:
            name = machine.split(b"=", 1)[1].decode()
            path = Path(directory.split(b"=", 1)[1].decode())
            found.append(Machine(name, name, "", path, int(cmdline.parent.name)))
    return found


def stop(m: Machine, grace_s: float = 30) -> None:
    """SIGTERM asks nspawn to shut the container down cleanly; SIGKILL after the grace period."""
    if not is_ours(m):
        return
    assert m.pid is not None
    os.kill(m.pid, signal.SIGTERM)
    deadline = time.monotonic() + grace_s
    while time.monotonic() < deadline:
        if _reap(m.pid):
            return
        time.sleep(0.3)
    if is_ours(m):
        # Kill the container's init first: it is PID 1 of the container's namespaces, so everything inside goes
        # with it; killing only nspawn would leave the container running, orphaned, holding its veth.
        inits = _children(m.pid)
        for child in inits:
            with contextlib.suppress(ProcessLookupError):
                os.kill(child, signal.SIGKILL)
        os.kill(m.pid, signal.SIGKILL)
        # Wait until nspawn and the container's init have really exited (init last: after all inside it).
        for _ in range(100):
            if _reap(m.pid) and all(_state(pid) in ("Z", "X") for pid in inits):
                return
            time.sleep(0.2)


def _children(pid: int) -> list[int]:
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            if int(stat.read_text().rsplit(")", 1)[1].split()[1]) == pid:
                found.append(int(stat.parent.name))
        except (OSError, IndexError, ValueError):
            continue
    return found


def _reap(pid: int) -> bool:
    try:
        done, _ = os.waitpid(pid, os.WNOHANG)
        if done:
            return True
    except ChildProcessError:
        pass  # not our child (lab started by another process): fall back to /proc
    return not Path(f"/proc/{pid}").exists() or "Z" in _state(pid)


def _state(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return "X"


def wait_ssh(m: Machine, ssh_base: list[str], admin: str, timeout_s: float, log_dir: Path) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if m.pid and _reap(m.pid):
            raise LabError(f"{m.machine} exited while booting; see {log_dir / (m.machine + '.console.log')}")
        try:
            with socket.create_connection((m.address, 22), timeout=2):
                pass
        except OSError:
            time.sleep(1)
            continue
        proc = subprocess.run(
            [*ssh_base, f"{admin}@{m.address}", "true"], check=False, capture_output=True, timeout=30
        )
        if proc.returncode == 0:
            return
        time.sleep(1)
    raise LabError(
        f"{m.machine} ({m.address}) did not answer SSH within {timeout_s:.0f} s; "
        f"see {log_dir / (m.machine + '.console.log')}"
    )
