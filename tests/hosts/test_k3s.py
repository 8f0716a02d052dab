"""The k3s roles: the pinned binary, every node Ready with the render-worker label, the registry mirror,
the kubeconfig on the control machine. Where the k3s binary could not be downloaded and no air-gap artifacts
were given, the role stopped before installing anything; these checks then skip and say so."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

K3S = "/usr/local/bin/k3s"
REPO = Path(__file__).resolve().parents[2]
NOT_INSTALLED = (
    "k3s is not installed on {host}: its binary could not be downloaded and no air-gap artifacts were given "
    "(ansible-playbook -e renderlab_k3s_artifacts_dir=DIR; see README 'Configure the hosts')"
)


@pytest.fixture(scope="module")
def k3s_installed(host, lab_vars) -> None:
    if not host.file(K3S).exists:
        pytest.skip(NOT_INSTALLED.format(host=lab_vars["inventory_hostname"]))


def _k3s_version_ok(host, lab_vars) -> None:
    out = host.check_output(f"{K3S} --version")
    assert f"k3s version {lab_vars['renderlab_k3s_version']} " in out


def _registry_mirror_ok(host, lab_vars) -> None:
    with host.sudo():
        text = host.file("/etc/rancher/k3s/registries.yaml").content_string
    port = lab_vars["renderlab_registry_node_port"]
    assert f'"127.0.0.1:{port}":' in text
    assert f"http://127.0.0.1:{port}" in text


def _token_private(host) -> None:
    with host.sudo():
        token = host.file("/etc/rancher/k3s/cluster-token")
        assert (token.user, token.mode) == ("root", 0o600)
        assert host.file("/etc/rancher/k3s/config.yaml").mode == 0o600


@pytest.mark.group("k3s_server")
class TestServer:
    def test_unit_and_version(self, host, lab_vars, k3s_installed):
        assert host.service("k3s").is_running and host.service("k3s").is_enabled
        assert host.socket("tcp://0.0.0.0:6443").is_listening or host.socket("tcp://:::6443").is_listening
        _k3s_version_ok(host, lab_vars)

    def test_every_node_ready_and_workers_labelled(self, host, lab_vars, k3s_installed):
        groups = lab_vars["groups"]
        with host.sudo():
            nodes = json.loads(host.check_output(f"{K3S} kubectl get nodes -o json"))["items"]
        by_name = {n["metadata"]["name"]: n for n in nodes}
        assert set(by_name) == set(groups["k3s_server"]) | set(groups["k3s_agent"])
        for name, node in by_name.items():
            ready = {c["type"]: c["status"] for c in node["status"]["conditions"]}["Ready"]
            assert ready == "True", f"node {name} is not Ready"
        for name in groups["k3s_agent"]:
            assert by_name[name]["metadata"]["labels"].get("renderlab.io/render-worker") == "true"

    def test_registry_mirror_and_private_token(self, host, lab_vars, k3s_installed):
        _registry_mirror_ok(host, lab_vars)
        _token_private(host)

    def test_kubeconfig_fetched_to_the_control_machine(self, lab_vars, k3s_installed):
        kubeconfig = REPO / "kubeconfig"
        assert kubeconfig.exists(), "the k3s_server role did not fetch the kubeconfig"
        assert kubeconfig.stat().st_mode & 0o077 == 0, "kubeconfig is readable by others"
        assert f"https://{lab_vars['ansible_host']}:6443" in kubeconfig.read_text()


@pytest.mark.group("k3s_agent")
class TestAgent:
    def test_unit_and_version(self, host, lab_vars, k3s_installed):
        assert host.service("k3s-agent").is_running and host.service("k3s-agent").is_enabled
        _k3s_version_ok(host, lab_vars)

    def test_registry_mirror_and_private_token(self, host, lab_vars, k3s_installed):
        _registry_mirror_ok(host, lab_vars)
        _token_private(host)
