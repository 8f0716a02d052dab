"""What a k3s host needs from its systemd-nspawn container on this kind of machine (cgroup v1, no
CAP_SYS_RESOURCE), and only there: a lab VM needs none of it. Each item was found by running a container with
containerd + runc inside a lab host (README, "How each layer is verified")."""

from __future__ import annotations

from pathlib import Path

CLUSTER_ROLES = ("k3s_server", "k3s_agent")

ARGS = [
    # nspawn's seccomp filter refuses the keyring calls; runc joins a fresh session keyring for every
    # container ("unable to join session keyring: unable to create session key: operation not permitted").
    "--system-call-filter=add_key keyctl request_key",
]

# nspawn mounts every cgroup v1 controller read-only; runc must create the containers' cgroups
# ("mkdir /sys/fs/cgroup/cpuset/k8s.io: read-only file system"). Remounted read-write at boot, before any
# container runtime starts. Not SYSTEMD_NSPAWN_API_VFS_WRITABLE: a writable /sys makes networkd wait for a
# udev that a container never runs, and host0 stays down.
CGROUPS_RW_UNIT_NAME = "renderlab-cgroups-rw.service"
CGROUPS_RW_UNIT = """[Unit]
Description=renderlab lab: cgroup controllers writable for the container runtime
DefaultDependencies=no
After=local-fs.target
Before=containerd.service k3s.service k3s-agent.service

[Service]
Type=oneshot
RemainAfterExit=yes
ExecStart=/bin/sh -c 'for d in /sys/fs/cgroup/*/; do mountpoint -q "$$d" && mount -o remount,bind,rw "$$d"; done; true'

[Install]
WantedBy=sysinit.target
"""

# The kubelet opens /dev/kmsg (its OOM watcher); nspawn gives the container none. The console stands in,
# as kind does: the host's kernel log stays out of the lab.
TMPFILES = "L /dev/kmsg - - - - /dev/console\n"


def is_cluster_node(role: str) -> bool:
    return role in CLUSTER_ROLES


def prepare(root: Path) -> None:
    """Write the node-side settings into a host's tree (applied by systemd at boot)."""
    (root / "etc/tmpfiles.d").mkdir(parents=True, exist_ok=True)
    (root / "etc/tmpfiles.d/renderlab-kmsg.conf").write_text(TMPFILES)
    unit = root / "etc/systemd/system" / CGROUPS_RW_UNIT_NAME
    unit.parent.mkdir(parents=True, exist_ok=True)
    unit.write_text(CGROUPS_RW_UNIT)
    wants = root / "etc/systemd/system/sysinit.target.wants"
    wants.mkdir(parents=True, exist_ok=True)
    link = wants / CGROUPS_RW_UNIT_NAME
    if not link.is_symlink():
        link.symlink_to(f"/etc/systemd/system/{CGROUPS_RW_UNIT_NAME}")
