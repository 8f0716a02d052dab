"""The lab-only container settings of the Kubernetes nodes: only they get them, the boot unit is well formed,
and the lab-only role values reach the lab's inventory and nothing else."""

from __future__ import annotations

import configparser
from pathlib import Path

import yaml

from renderlab.lab.config import load
from renderlab.workstation.nspawn_lab import cluster_node

ROOT = Path(__file__).resolve().parents[2]


def test_only_the_cluster_roles_get_the_settings():
    roles = {h.role for h in load(ROOT / "Pulumi.example.yaml").hosts.values()}
    assert {r for r in roles if cluster_node.is_cluster_node(r)} == {"control_plane", "worker"}


def test_prepare_writes_the_kmsg_link_and_an_enabled_cgroup_unit(tmp_path: Path):
    cluster_node.prepare(tmp_path, "rl9-worker")
    cluster_node.prepare(tmp_path, "rl9-worker")  # twice: a re-prepared tree is the same
    assert (tmp_path / "etc/tmpfiles.d/renderlab-kmsg.conf").read_text().split() == [
        "L", "/dev/kmsg", "-", "-", "-", "-", "/dev/console",
    ]  # fmt: skip
    name = cluster_node.CGROUPS_RW_UNIT_NAME
    link = tmp_path / "etc/systemd/system/sysinit.target.wants" / name
    assert link.readlink() == Path("/etc/systemd/system") / name
    unit = configparser.ConfigParser(interpolation=None, strict=False)
    unit.read_string((tmp_path / "etc/systemd/system" / name).read_text())
    assert "containerd.service" in unit["Unit"]["Before"] and "kubelet.service" in unit["Unit"]["Before"]
    # Before every ordinary service (their cgroups are set up after sysinit.target), and after local mounts only.
    assert "sysinit.target" in unit["Unit"]["Before"].split() and unit["Unit"]["DefaultDependencies"] == "no"
    text = (tmp_path / "etc/systemd/system" / name).read_text()
    # systemd expands $d itself; the shell's variable must be written $$d.
    assert '"$$d"' in text and '"$d"' not in text
    # This node's own cgroup root in every hierarchy, the same path its kubelet patch names.
    root = cluster_node.host_vars("rl9-worker")["renderlab_kubelet_patch"]["cgroupRoot"]
    assert f'mkdir -p "$$d"{root.lstrip("/")};' in text
    assert "ExecStart=/bin/mount --make-rshared /\n" in text
    assert (tmp_path / "lib/modules").is_dir()
    # The node's own net.* values come back after a restart (systemd-sysctl skips a container); only those.
    net = (tmp_path / "etc/systemd/system" / cluster_node.NET_SYSCTLS_UNIT_NAME).read_text()
    assert "ExecStart=-/sbin/sysctl -q --system --pattern ^net[.]\n" in net
    assert (
        tmp_path / "etc/systemd/system/sysinit.target.wants" / cluster_node.NET_SYSCTLS_UNIT_NAME
    ).is_symlink()


def test_prepare_writes_the_kubelets_kernel_values_and_their_enabled_mount_unit(tmp_path: Path):
    cluster_node.prepare(tmp_path, "rl9-worker")
    for key, value in cluster_node.KUBELET_SYSCTLS.items():
        name = key.replace("/", ".")
        assert (tmp_path / cluster_node.SYSCTL_DIR.lstrip("/") / name).read_text() == f"{value}\n"
        assert f"{cluster_node.SYSCTL_DIR}/{name} /proc/sys/{key}\n" in cluster_node.SYSCTLS_UNIT
    wants = tmp_path / "etc/systemd/system/sysinit.target.wants" / cluster_node.SYSCTLS_UNIT_NAME
    assert wants.readlink() == Path("/etc/systemd/system") / cluster_node.SYSCTLS_UNIT_NAME
    assert (tmp_path / "etc/systemd/system" / cluster_node.SYSCTLS_UNIT_NAME).read_text().count(
        "ExecStart="
    ) == len(cluster_node.KUBELET_SYSCTLS)


def test_each_node_has_its_own_cgroup_root():
    roots = {
        cluster_node.host_vars(m)["renderlab_kubelet_patch"]["cgroupRoot"]
        for m in ("rl1-worker", "rl2-worker")
    }
    assert len(roots) == 2


def test_remove_cgroup_root_removes_the_nodes_tree_deepest_first_and_nothing_else(tmp_path: Path):
    root = cluster_node.cgroup_root("rl9-worker").lstrip("/")
    # memory: nested under the lab process's own cgroup, as on this machine.
    at = {"memory": "process_api/abc", "cpu,cpuacct": "", "pids": ""}
    for hierarchy, parent in at.items():
        (tmp_path / hierarchy / parent / root / "kubepods" / "besteffort" / "pod1").mkdir(parents=True)
        (tmp_path / hierarchy / "other").mkdir()
    (tmp_path / "cpu").symlink_to("cpu,cpuacct")
    removed = cluster_node.remove_cgroup_root("rl9-worker", tmp_path)
    assert sorted(removed) == sorted(str(tmp_path / h / p / root).replace("//", "/") for h, p in at.items())
    assert sorted(p.name for p in tmp_path.glob("*/*") if not p.parent.is_symlink()) == [
        *["other"] * 3,
        "process_api",
    ]


def test_lab_only_values_are_in_the_lab_inventory_and_not_in_the_production_one(tmp_path: Path):
    from renderlab.lab.inventory import inventory
    from renderlab.workstation.nspawn_lab import lifecycle as lab
    from renderlab.workstation.nspawn_lab.options import LabOptions

    options = LabOptions.from_env({"RENDERLAB_LAB_PREFIX": "rl9", "RENDERLAB_LAB_CACHE": str(tmp_path)})
    options.state.mkdir(parents=True)
    lab.write_stack(options, "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIlab lab@test", ["10.0.0.53"])
    config = load(options.state / "stack.yaml")
    # A Job asks for what a node container can give (the example's 2 cores never schedule there).
    assert config.pipeline.cpu == lab.LOCAL_JOB_CPU != load(ROOT / "Pulumi.example.yaml").pipeline.cpu
    local = lab.lab_inventory(config, options)
    overrides = local["all"]["vars"]["renderlab_kube_node_overrides"]
    # The admin kubeconfig lands in the lab's state folder, not in the checkout a real lab writes it to.
    assert local["all"]["vars"]["kube_control_plane_kubeconfig_dest"] == str(options.state / "kubeconfig")
    assert overrides["kubelet_config"]["failCgroupV1"] is False
    assert overrides["kube_proxy_config"] == {"conntrack": {"maxPerCore": 0}}
    assert overrides["ignore_preflight_errors"] == ["SystemVerification"]
    for group in ("control_plane", "worker"):
        for name, host in local["all"]["children"][group]["hosts"].items():
            assert host["renderlab_kubelet_patch"] == {"cgroupRoot": cluster_node.cgroup_root(f"rl9-{name}")}
    production = yaml.safe_dump(inventory(load(ROOT / "Pulumi.example.yaml")))
    for key in (*lab.LOCAL_ONLY_VARS, *lab.LOCAL_ONLY_HOST_VARS, "failCgroupV1", "maxPerCore"):
        assert key not in production
    # The roles' production defaults (values, not comments) hold none of the lab's settings.
    for defaults in (ROOT / "ansible" / "roles").glob("kube_*/defaults/main.yml"):
        values = yaml.safe_dump(yaml.safe_load(defaults.read_text()))
        for lab_value in ("failCgroupV1", "failSwapOn", "maxPerCore", "SystemVerification", "cgroupfs"):
            assert lab_value not in values, (defaults, lab_value)
