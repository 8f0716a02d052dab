"""The Kubernetes roles on each node: containerd and the kubelet at the pinned versions, running and enabled,
containerd's sandbox image the pause tag kubeadm names, kubeadm's config private, no join token left behind,
every node Ready, the admin kubeconfig fetched 0600. `make cluster-test` runs these against the local lab."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
KUBECTL = "/usr/local/bin/kubectl --kubeconfig /etc/kubernetes/admin.conf"


def _node(host, lab_vars) -> None:
    assert host.service("containerd").is_running and host.service("containerd").is_enabled
    assert host.service("kubelet").is_running and host.service("kubelet").is_enabled
    assert f"Kubernetes v{lab_vars['renderlab_kubernetes_version']}" in host.check_output(
        "/usr/local/bin/kubelet --version"
    )
    assert f" v{lab_vars['renderlab_containerd_version']} " in host.check_output(
        "/usr/local/bin/containerd --version"
    )
    with host.sudo():
        config = host.file("/etc/containerd/config.toml").content_string
        images = host.check_output("ctr -n k8s.io images ls -q").split()
        assert host.file("/etc/kubernetes/kubelet.conf").mode == 0o600
    pause = f"registry.k8s.io/pause:{lab_vars['renderlab_pause_version']}"
    assert f"sandbox = '{pause}'" in config
    assert pause in images
    port = lab_vars["renderlab_registry_node_port"]
    assert host.file(f"/etc/containerd/certs.d/127.0.0.1:{port}/hosts.toml").exists


@pytest.mark.group("control_plane")
class TestControlPlane:
    def test_runtime_and_kubelet(self, host, lab_vars):
        _node(host, lab_vars)

    def test_api_server_and_private_config(self, host, lab_vars):
        assert host.socket("tcp://0.0.0.0:6443").is_listening or host.socket("tcp://:::6443").is_listening
        with host.sudo():
            for path in ("/etc/kubernetes/kubeadm-config.yaml", "/etc/kubernetes/admin.conf"):
                f = host.file(path)
                assert (f.user, f.mode) == ("root", 0o600), path

    def test_every_node_ready_and_workers_labelled(self, host, lab_vars):
        groups = lab_vars["groups"]
        with host.sudo():
            nodes = json.loads(host.check_output(f"{KUBECTL} get nodes -o json"))["items"]
        by_name = {n["metadata"]["name"]: n for n in nodes}
        assert set(by_name) == set(groups["control_plane"]) | set(groups["worker"])
        for name, node in by_name.items():
            ready = {c["type"]: c["status"] for c in node["status"]["conditions"]}["Ready"]
            assert ready == "True", f"node {name} is not Ready"
        for name in groups["worker"]:
            assert by_name[name]["metadata"]["labels"].get("renderlab.io/render-worker") == "true"

    def test_no_join_token_outlives_its_join(self, host):
        with host.sudo():
            tokens = host.check_output("/usr/local/bin/kubeadm token list -o json")
        assert "by site.yml" not in tokens

    def test_kube_router_runs_on_every_node_without_its_service_proxy(self, host, lab_vars):
        with host.sudo():
            ds = json.loads(host.check_output(f"{KUBECTL} -n kube-system get daemonset kube-router -o json"))
        nodes = len(lab_vars["groups"]["control_plane"]) + len(lab_vars["groups"]["worker"])
        assert ds["status"]["numberReady"] == nodes
        assert "--run-service-proxy=false" in ds["spec"]["template"]["spec"]["containers"][0]["args"]

    def test_kubeconfig_fetched_to_the_control_machine(self, lab_vars):
        kubeconfig = Path(os.environ.get("RENDERLAB_KUBECONFIG", REPO / "kubeconfig"))
        assert kubeconfig.exists(), "the kube_control_plane role did not fetch the kubeconfig"
        assert kubeconfig.stat().st_mode & 0o077 == 0, "kubeconfig is readable by others"
        assert f"https://{lab_vars['ansible_host']}:6443" in kubeconfig.read_text()


@pytest.mark.group("worker")
class TestWorker:
    def test_runtime_and_kubelet(self, host, lab_vars):
        _node(host, lab_vars)

    def test_no_join_configuration_left(self, host):
        with host.sudo():
            assert not host.file("/etc/kubernetes/kubeadm-join.yaml").exists
