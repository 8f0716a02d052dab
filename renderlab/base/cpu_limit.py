"""The CPU limit this process runs under, as whole threads.

Kubernetes turns a container's CPU limit into a CFS quota on its cgroup. Blender counts the node's cores and
starts that many render threads, which the quota then throttles (a 2-CPU Job on a 32-core node: 32 threads
sharing 2 CPUs of time). Reading the quota lets the render start as many threads as it may run.
"""

from __future__ import annotations

import math
from pathlib import Path

CGROUP = Path("/sys/fs/cgroup")


def _threads(quota: int, period: int) -> int | None:
    return None if quota <= 0 or period <= 0 else max(1, math.ceil(quota / period))


def threads(root: Path = CGROUP) -> int | None:
    """ceil(quota / period) of this process's cgroup (v2 `cpu.max`, else v1 `cpu.cfs_quota_us`), or None when
    it has no limit or none can be read (a host's root cgroup, a workstation)."""
    try:
        quota, period = (root / "cpu.max").read_text().split()[:2]
        return None if quota == "max" else _threads(int(quota), int(period))
    except (OSError, ValueError):
        pass
    for controller in ("cpu,cpuacct", "cpu"):  # v1: the container runtime mounts its own cgroup here
        try:
            quota = int((root / controller / "cpu.cfs_quota_us").read_text())
            period = int((root / controller / "cpu.cfs_period_us").read_text())
        except (OSError, ValueError):
            continue
        return _threads(quota, period)
    return None
