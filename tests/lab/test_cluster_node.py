"""The lab-only container settings of the k3s hosts: only they get them, and the boot unit is well formed."""

from __future__ import annotations

import configparser
from pathlib import Path

from renderlab.lab.config import load
from renderlab.workstation.nspawn_lab import cluster_node

ROOT = Path(__file__).resolve().parents[2]


def test_only_the_cluster_roles_get_the_settings():
    roles = {h.role for h in load(ROOT / "Pulumi.example.yaml").hosts.values()}
    assert {r for r in roles if cluster_node.is_cluster_node(r)} == {"control_plane", "worker"}


def test_prepare_writes_the_kmsg_link_and_an_enabled_cgroup_unit(tmp_path: Path):
    cluster_node.prepare(tmp_path)
    cluster_node.prepare(tmp_path)  # twice: a re-prepared tree is the same
    assert (tmp_path / "etc/tmpfiles.d/renderlab-kmsg.conf").read_text().split() == [
        "L", "/dev/kmsg", "-", "-", "-", "-", "/dev/console",
    ]  # fmt: skip
    name = cluster_node.CGROUPS_RW_UNIT_NAME
    link = tmp_path / "etc/systemd/system/sysinit.target.wants" / name
    assert link.readlink() == Path("/etc/systemd/system") / name
    unit = configparser.ConfigParser(interpolation=None, strict=False)
    unit.read_string((tmp_path / "etc/systemd/system" / name).read_text())
    assert "k3s.service" in unit["Unit"]["Before"] and "k3s-agent.service" in unit["Unit"]["Before"]
    # systemd expands $d itself; the shell's variable must be written $$d.
    assert '"$$d"' in unit["Service"]["ExecStart"] and '"$d"' not in unit["Service"]["ExecStart"]


def test_prepare_writes_the_kubelets_kernel_values_and_their_enabled_mount_unit(tmp_path: Path):
    cluster_node.prepare(tmp_path)
    for key, value in cluster_node.KUBELET_SYSCTLS.items():
        name = key.replace("/", ".")
        assert (tmp_path / cluster_node.SYSCTL_DIR.lstrip("/") / name).read_text() == f"{value}\n"
        assert f"{cluster_node.SYSCTL_DIR}/{name} /proc/sys/{key}\n" in cluster_node.SYSCTLS_UNIT
    wants = tmp_path / "etc/systemd/system/sysinit.target.wants" / cluster_node.SYSCTLS_UNIT_NAME
    assert wants.readlink() == Path("/etc/systemd/system") / cluster_node.SYSCTLS_UNIT_NAME
    assert (tmp_path / "etc/systemd/system" / cluster_node.SYSCTLS_UNIT_NAME).read_text().count(
        "ExecStart="
    ) == len(cluster_node.KUBELET_SYSCTLS)
