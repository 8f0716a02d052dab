"""Kernel limits the lab's hosts share with everything else on this machine (containers are not VMs).

Every kubelet, containerd and systemd in the lab takes inotify instances from one per-user budget of this
kernel (root's, here: the nspawn hosts run without user namespaces). Debian's default of 128 is used up by two
labs' worth of systemd plus a browser, and a kubelet that cannot get one exits ("inotify_init: too many open
files") and restarts every 10 s until one is freed: a worker then joins minutes late. kind asks its hosts for
512 for the same reason; the lab raises it to that, never lowers it, and says so."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from renderlab.workstation.nspawn_lab.options import LabError

INOTIFY_INSTANCES = Path("/proc/sys/fs/inotify/max_user_instances")
WANTED_INOTIFY_INSTANCES = 512


def ensure_inotify_instances(
    say: Callable[[str], None], path: Path = INOTIFY_INSTANCES, wanted: int = WANTED_INOTIFY_INSTANCES
) -> int | None:
    """Raise the limit to `wanted` when it is lower. Returns the old value when it raised it, else None."""
    current = int(path.read_text().split()[0])
    if current >= wanted:
        return None
    try:
        path.write_text(f"{wanted}\n")
    except OSError as e:
        raise LabError(
            f"fs.inotify.max_user_instances is {current}, too few for the lab's kubelets and containerd "
            f"({e.strerror or e}); raise it as root: `sysctl -w fs.inotify.max_user_instances={wanted}`"
        ) from e
    say(f"raised fs.inotify.max_user_instances from {current} to {wanted} (the nodes' kubelets need them)")
    return current
