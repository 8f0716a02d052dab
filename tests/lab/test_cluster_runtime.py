"""The container runtime inside the lab's two Kubernetes nodes: what a node needs from its nspawn container.
On each node: Debian's containerd + runc, the pause image that `make k8s-artifacts` builds imported from its
air-gap archive, one container RUNNING.

It uses its own containerd namespace, so the containers' cgroups (which land at the root of this machine's
cgroup v1 hierarchies: nspawn here has no cgroup namespace) are named for this lab and removed afterwards.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from renderlab.lab.config import load
from renderlab.workstation import k8s_artifacts
from renderlab.workstation.nspawn_lab import cluster_node
from renderlab.workstation.nspawn_lab import lab as locallab
from renderlab.workstation.nspawn_lab.options import LabOptions

pytestmark = [pytest.mark.lab, pytest.mark.slow, pytest.mark.timeout(1200)]


@pytest.fixture(scope="module")
def lab(lab_preflight):
    with locallab.running_lab() as running:
        yield running


def _ssh(lab, address: str, command: str, timeout: int = 600) -> subprocess.CompletedProcess:
    admin = load(lab.stack_file).ssh.admin_user
    return subprocess.run(
        [*lab.ssh_base(), f"{admin}@{address}", command],
        capture_output=True, text=True, timeout=timeout, check=False,
    )  # fmt: skip


def _scp(lab, src: Path, address: str, dest: str) -> None:
    admin = load(lab.stack_file).ssh.admin_user
    opts = locallab.ssh_options(lab.state)
    subprocess.run(["scp", "-q", *opts, str(src), f"{admin}@{address}:{dest}"], check=True, timeout=120)


def test_a_container_runs_on_both_nodes(lab, tmp_path, say):
    config = load(lab.stack_file)
    nodes = [m for m in lab.machines if cluster_node.is_cluster_node(config.hosts[m.name].role)]
    assert {m.name for m in nodes} == {"control-plane", "worker"}
    artifacts = k8s_artifacts.default_cache(config.kubernetes.version)
    if not (artifacts / k8s_artifacts.READY).exists():
        pytest.skip(f"no Kubernetes artifacts at {artifacts}: run `make k8s-artifacts`")
    pause_tar = artifacts / "images" / "pause.tar"
    ref = json.loads((artifacts / k8s_artifacts.MANIFEST).read_text())["sandbox_image"]
    ns = f"renderlab-{LabOptions.from_env().prefix}"
    machine_panic = Path("/proc/sys/kernel/panic").read_text().strip()
    try:
        for m in nodes:
            install = _ssh(
                lab, m.address,
                "sudo apt-get update -qq && sudo DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "
                "containerd runc >/dev/null",
            )  # fmt: skip
            assert install.returncode == 0, install.stderr[-2000:]
            # The kubelet's kernel values, node-local: the node reads them, the machine keeps its own.
            seen = _ssh(lab, m.address, "cat /proc/sys/kernel/panic /proc/sys/vm/overcommit_memory")
            assert seen.stdout.split() == ["10", "1"], seen.stdout + seen.stderr
            assert Path("/proc/sys/kernel/panic").read_text().strip() == machine_panic
            _scp(lab, pause_tar, m.address, "/tmp/pause.tar")
            run = _ssh(
                lab, m.address,
                f"sudo ctr -n {ns} images import /tmp/pause.tar >/dev/null && "
                f"sudo ctr -n {ns} run -d {ref} pause-{m.name} && sleep 1 && sudo ctr -n {ns} task ls",
            )  # fmt: skip
            assert run.returncode == 0, run.stdout + run.stderr
            (task,) = [line.split() for line in run.stdout.splitlines() if line.startswith(f"pause-{m.name}")]
            say(f"\n{m.name}: {' '.join(task)}")
            assert task[2] == "RUNNING"
    finally:
        for m in nodes:
            _ssh(lab, m.address, f"sudo ctr -n {ns} task kill -s KILL pause-{m.name}; sleep 1; "
                 f"sudo ctr -n {ns} task rm pause-{m.name}; sudo ctr -n {ns} containers rm pause-{m.name}",
                 timeout=60)  # fmt: skip
        for group in Path("/sys/fs/cgroup").glob(f"*/{ns}"):
            for leftover in [*(p for p in group.iterdir() if p.is_dir()), group]:
                leftover.rmdir()
