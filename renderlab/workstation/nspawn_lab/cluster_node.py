"""What a k3s host needs from its systemd-nspawn container on this kind of machine (cgroup v1, no
CAP_SYS_RESOURCE), and only there: a lab VM needs none of it. Each item was found by running a container with
containerd + runc inside a lab host (README, "How each layer is verified")."""

from __future__ import annotations

from pathlib import Path

CLUSTER_ROLES = ("control_plane", "worker")

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

# The kubelet sets these kernel values at start and stops ("Failed to start ContainerManager ... open
# /proc/sys/kernel/panic: read-only file system") where it cannot: nspawn mounts /proc/sys read-only, and
# making it writable would change this whole shared machine (kernel.panic_on_oops=1 panics it on any oops).
# Its tolerant mode (KubeletInUserNamespace) applies only inside a user namespace, which these hosts are not.
# So each node reads the kubelet's own wanted values from files bind-mounted over them, in its own mount
# namespace: the kubelet sees nothing to change, and the machine's kernel values stay as they are.
# (The values are pkg/kubelet/cm's setupKernelTunables desired state.)
KUBELET_SYSCTLS = {
    "vm/overcommit_memory": 1,
    "vm/panic_on_oom": 0,
    "kernel/panic": 10,
    "kernel/panic_on_oops": 1,
    "kernel/keys/root_maxkeys": 1000000,
    "kernel/keys/root_maxbytes": 25000000,
}
SYSCTL_DIR = "/etc/renderlab/kubelet-sysctls"
SYSCTLS_UNIT_NAME = "renderlab-kubelet-sysctls.service"
SYSCTLS_UNIT = (
    """[Unit]
Description=renderlab lab: the kubelet's kernel values as node-local stand-ins (the machine's stay unchanged)
DefaultDependencies=no
After=local-fs.target
Before=k3s.service k3s-agent.service

[Service]
Type=oneshot
RemainAfterExit=yes
"""
    + "".join(
        f"ExecStart=/bin/mount --bind -o ro {SYSCTL_DIR}/{key.replace('/', '.')} /proc/sys/{key}\n"
        for key in KUBELET_SYSCTLS
    )
    + """
[Install]
WantedBy=sysinit.target
"""
)

# The kubelet opens /dev/kmsg (its OOM watcher); nspawn gives the container none. The console stands in,
# as kind does: the host's kernel log stays out of the lab.
TMPFILES = "L /dev/kmsg - - - - /dev/console\n"


def is_cluster_node(role: str) -> bool:
    return role in CLUSTER_ROLES


def prepare(root: Path) -> None:
    """Write the node-side settings into a host's tree (applied by systemd at boot)."""
    (root / "etc/tmpfiles.d").mkdir(parents=True, exist_ok=True)
    (root / "etc/tmpfiles.d/renderlab-kmsg.conf").write_text(TMPFILES)
    sysctls = root / SYSCTL_DIR.lstrip("/")
    sysctls.mkdir(parents=True, exist_ok=True)
    for key, value in KUBELET_SYSCTLS.items():
        (sysctls / key.replace("/", ".")).write_text(f"{value}\n")
    units = root / "etc/systemd/system"
    wants = units / "sysinit.target.wants"
    wants.mkdir(parents=True, exist_ok=True)
    for name, text in ((CGROUPS_RW_UNIT_NAME, CGROUPS_RW_UNIT), (SYSCTLS_UNIT_NAME, SYSCTLS_UNIT)):
        (units / name).write_text(text)
        link = wants / name
        if not link.is_symlink():
            link.symlink_to(f"/etc/systemd/system/{name}")
