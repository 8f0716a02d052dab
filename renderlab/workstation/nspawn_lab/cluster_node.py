"""What a Kubernetes node needs from its systemd-nspawn container on this kind of machine (cgroup v1 without a
cgroup namespace, no CAP_SYS_RESOURCE, a read-only /proc/sys), and only there: a lab VM needs none of it. Each
item was found by running containerd + runc, then kubeadm, inside a lab host; kind's node image (its entrypoint
and its kubeadm config patches) is the reference for running a node inside a container.

Two halves, kept here together: what the container itself gets at boot (`prepare`, `ARGS`), and the lab-only
values the roles are handed through the lab's inventory (`inventory_vars`, `host_vars`); production role
defaults hold none of them."""

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
# Done before any ordinary service starts: a cgroup hierarchy remounted while systemd sets up a service's cgroup
# failed that service once (systemd-user-sessions: /run/nologin stayed, and the node refused every login).
Before=sysinit.target containerd.service kubelet.service

[Service]
Type=oneshot
RemainAfterExit=yes
ExecStart=/bin/sh -c 'for d in /sys/fs/cgroup/*/; do mountpoint -q "$$d" && mount -o remount,bind,rw "$$d"; done; true'
# No cgroup namespace: every node sees this machine's whole hierarchies, so each kubelet gets a cgroup root of
# its own (kubeletconfiguration patch cgroupRoot), or the two would remove each other's pod cgroups as orphans.
ExecStart=/bin/sh -c 'for d in /sys/fs/cgroup/*/; do mountpoint -q "$$d" && mkdir -p "$$d"%(root)s; done; true'
# kind's entrypoint does the same: volumes mounted by the kubelet must propagate into the pods.
ExecStart=/bin/mount --make-rshared /

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
# Done before any ordinary service starts: a cgroup hierarchy remounted while systemd sets up a service's cgroup
# failed that service once (systemd-user-sessions: /run/nologin stayed, and the node refused every login).
Before=sysinit.target containerd.service kubelet.service

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

# systemd-sysctl skips a container (ConditionPathIsReadWrite=/proc/sys/), so after a restart the node's own
# network namespace would come back without the forwarding values kube_node writes to /etc/sysctl.d. Those
# (net.*) are the node's to set; the rest of /proc/sys stays the machine's and untouched. (A leading "-": on
# the first boot procps is not installed yet, and there is nothing to apply.)
NET_SYSCTLS_UNIT_NAME = "renderlab-net-sysctls.service"
NET_SYSCTLS_UNIT = """[Unit]
Description=renderlab lab: the node's own network sysctls (systemd-sysctl skips a container)
DefaultDependencies=no
After=local-fs.target
# Done before any ordinary service starts: a cgroup hierarchy remounted while systemd sets up a service's cgroup
# failed that service once (systemd-user-sessions: /run/nologin stayed, and the node refused every login).
Before=sysinit.target containerd.service kubelet.service

[Service]
Type=oneshot
RemainAfterExit=yes
ExecStart=-/sbin/sysctl -q --system --pattern ^net[.]

[Install]
WantedBy=sysinit.target
"""

# The kubelet opens /dev/kmsg (its OOM watcher); nspawn gives the container none. The console stands in,
# as kind does: the host's kernel log stays out of the lab.
TMPFILES = "L /dev/kmsg - - - - /dev/console\n"


def is_cluster_node(role: str) -> bool:
    return role in CLUSTER_ROLES


def cgroup_root(machine: str) -> str:
    """This node's kubelet cgroup root: named for the nspawn machine, unique across labs."""
    return f"/renderlab-{machine}"


# The lab-only values the roles take (site.yml reads `renderlab_kube_node_overrides`): kind's settings for a
# node inside a container, plus what this machine's kernel and cgroup v1 need.
OVERRIDES = {
    # systemd in the container does not own the cgroup hierarchies the pods land in: the kubelet and
    # containerd's runc manage them directly.
    "cgroup_driver": "cgroupfs",
    # No CAP_SYS_RESOURCE: runc may not lower a container's oom_score_adj; containerd clamps it instead.
    "restrict_oom_score_adj": True,
    "kubelet_config": {
        # kubelet >= 1.35 refuses cgroup v1 unless told; this machine is cgroup v1 (hybrid).
        "failCgroupV1": False,
        "failSwapOn": False,
        # The nodes share this machine's disk with everything else on it: never evict or collect on its
        # fill level (kind's values).
        "imageGCHighThresholdPercent": 100,
        "evictionHard": {"nodefs.available": "0%", "nodefs.inodesFree": "0%", "imagefs.available": "0%"},
    },
    # nf_conntrack_max is the machine's, not the node's: kube-proxy leaves it alone (kind's value).
    "kube_proxy_config": {"conntrack": {"maxPerCore": 0}},
    # With failCgroupV1: false, kubeadm >= 1.35's SystemVerification still fails on cgroup v1 (and on the
    # kernel config a container cannot read).
    "ignore_preflight_errors": ["SystemVerification"],
}


def inventory_vars() -> dict:
    return {"renderlab_kube_node_overrides": OVERRIDES}


def host_vars(machine: str) -> dict:
    return {"renderlab_kubelet_patch": {"cgroupRoot": cgroup_root(machine)}}


def prepare(root: Path, machine: str) -> None:
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
    # kube-router mounts the host's /lib/modules (read-only); a container tree has none.
    (root / "lib/modules").mkdir(parents=True, exist_ok=True)
    cgroups_unit = CGROUPS_RW_UNIT % {"root": cgroup_root(machine).lstrip("/")}
    # The container's systemd trims cgroups it does not know from its own (name=systemd) hierarchy on a
    # daemon-reload, so the kubelet's root is made again right before every kubelet start.
    dropin = root / "etc/systemd/system/kubelet.service.d"
    dropin.mkdir(parents=True, exist_ok=True)
    (dropin / "05-renderlab-cgroup-root.conf").write_text(
        "[Service]\n"
        + [line for line in cgroups_unit.splitlines() if "mkdir -p" in line][0].replace(
            "ExecStart=", "ExecStartPre="
        )
        + "\n"
    )
    for name, text in (
        (CGROUPS_RW_UNIT_NAME, cgroups_unit),
        (SYSCTLS_UNIT_NAME, SYSCTLS_UNIT),
        (NET_SYSCTLS_UNIT_NAME, NET_SYSCTLS_UNIT),
    ):
        (units / name).write_text(text)
        link = wants / name
        if not link.is_symlink():
            link.symlink_to(f"/etc/systemd/system/{name}")


def remove_cgroup_root(machine: str, cgroups: Path = Path("/sys/fs/cgroup")) -> list[str]:
    """After the node stopped: remove its cgroup root from every hierarchy, deepest first (a cgroup is
    removed with rmdir once it holds no process). A hierarchy the lab's own process is nested in (here:
    memory, under the sandbox's cgroup) holds it that much deeper, so a few levels are searched. Returns the
    cgroup roots removed."""
    removed = []
    name = cgroup_root(machine).lstrip("/")
    for hierarchy in sorted(cgroups.glob("*/")):
        if hierarchy.is_symlink():
            continue
        tops = [t for depth in range(4) for t in hierarchy.glob("*/" * depth + name) if t.is_dir()]
        for top in tops:
            for d in sorted(
                (p for p in top.rglob("*") if p.is_dir()), key=lambda p: len(p.parts), reverse=True
            ):
                d.rmdir()
            top.rmdir()
            removed.append(str(top))
    return removed
