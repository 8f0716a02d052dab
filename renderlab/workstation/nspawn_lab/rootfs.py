"""The cached Debian 12 root filesystem every lab host is copied from (built once by debootstrap)."""

from __future__ import annotations

import glob
import re
import shutil
import subprocess
import time
from pathlib import Path

from renderlab.base import atomic
from renderlab.workstation.nspawn_lab.options import LabError

SUITE = "bookworm"
# Just enough to boot under systemd and be managed by Ansible over SSH (like a cloud image).
PACKAGES = [
    "systemd",
    "systemd-sysv",
    "dbus",
    "openssh-server",
    "python3",
    "sudo",
    "iproute2",
    "ca-certificates",
]
READY = ".renderlab-rootfs-ok"


def host_mirror() -> str | None:
    """The Debian mirror this machine's apt uses (deb822 .sources first, then sources.list)."""
    for path in sorted(glob.glob("/etc/apt/sources.list.d/*.sources")):
        for stanza in Path(path).read_text(encoding="utf-8").split("\n\n"):
            fields = dict(
                (k.strip().lower(), v.strip())
                for k, _, v in (
                    line.partition(":") for line in stanza.splitlines() if not line.startswith("#")
                )
            )
            if SUITE in fields.get("suites", "").split() and "deb" in fields.get("types", "").split():
                return fields.get("uris", "").split()[0] or None
    sources = Path("/etc/apt/sources.list")
    if sources.exists():
        m = re.search(rf"^deb\s+(?:\[[^]]*\]\s+)?(\S+)\s+{SUITE}\s", sources.read_text(), re.M)
        if m:
            return m.group(1)
    return None


def ensure(cache: Path, log) -> Path:
    """Return the cached rootfs, building it first if it is missing (temp name, then rename)."""
    final = cache / f"rootfs-{SUITE}"
    if (final / READY).exists():
        return final
    cache.mkdir(parents=True, exist_ok=True)
    mirror = host_mirror()
    with atomic.folder(final, cache / f"rootfs-{SUITE}.tmp") as tmp:
        cmd = ["debootstrap", "--variant=minbase", f"--include={','.join(PACKAGES)}", SUITE, str(tmp)]
        if mirror:
            cmd.append(mirror)
        log(f"building the Debian {SUITE} rootfs with debootstrap (once; cached in {final}) ...")
        t0 = time.monotonic()
        with open(cache / "debootstrap.log", "w") as out:
            rc = subprocess.run(cmd, check=False, stdout=out, stderr=subprocess.STDOUT).returncode
        if rc != 0:
            raise LabError(f"debootstrap failed (exit {rc}); see {cache / 'debootstrap.log'}")
        _generalize(tmp)
        (tmp / READY).write_text(f"{SUITE} {mirror or 'debootstrap default mirror'}\n")
    log(f"rootfs ready in {time.monotonic() - t0:.0f} s")
    return final


def _generalize(root: Path) -> None:
    """Make the tree a template: no host keys, no machine id, networkd on, apt sources like the host's."""
    for key in (root / "etc/ssh").glob("ssh_host_*"):
        key.unlink()
    (root / "etc/machine-id").write_text("")
    wants = root / "etc/systemd/system/multi-user.target.wants"
    wants.mkdir(parents=True, exist_ok=True)
    link = wants / "systemd-networkd.service"
    if not link.exists():
        link.symlink_to("/lib/systemd/system/systemd-networkd.service")
    # Security and point-release updates too (debootstrap writes the main suite only).
    host_sources = sorted(glob.glob("/etc/apt/sources.list.d/*.sources"))
    if host_sources:
        (root / "etc/apt/sources.list").unlink(missing_ok=True)
        for src in host_sources:
            shutil.copy(src, root / "etc/apt/sources.list.d" / Path(src).name)
