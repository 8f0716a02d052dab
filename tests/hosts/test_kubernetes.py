"""The Kubernetes roles on each node: containerd and the kubelet at the pinned versions, running and enabled,
containerd's sandbox image the pause tag kubeadm names, kubeadm's config private, no join token left behind,
every node Ready, the admin kubeconfig fetched 0600. `make cluster-test` runs these against the local lab."""

from __future__ import annotations

import base64
import json
import os
import secrets
import shlex
import time
from pathlib import Path

import pytest
import yaml

from renderlab.lab import lab_ca

REPO = Path(__file__).resolve().parents[2]
KUBECTL = "/usr/local/bin/kubectl --kubeconfig /etc/kubernetes/admin.conf"
PKI = "/etc/kubernetes/pki"
# Reads one key straight from etcd (its JSON gateway, with the API server's own etcd client certificate) and
# prints the stored bytes, base64: what a stolen etcd disk or backup would hold.
ETCD_READ = f"""
import base64, json, ssl, sys, urllib.request
ctx = ssl.create_default_context(cafile="{PKI}/etcd/ca.crt")
ctx.load_cert_chain("{PKI}/apiserver-etcd-client.crt", "{PKI}/apiserver-etcd-client.key")
body = json.dumps({{"key": base64.b64encode(sys.argv[1].encode()).decode()}}).encode()
with urllib.request.urlopen("https://127.0.0.1:2379/v3/kv/range", body, context=ctx, timeout=20) as r:
    print(json.load(r)["kvs"][0]["value"])
"""
# The kubelet's API without credentials: the status code it answers (401 when anonymous auth is off).
KUBELET_ANONYMOUS = """
import ssl, urllib.error, urllib.request
ctx = ssl.create_default_context(); ctx.check_hostname = False; ctx.verify_mode = ssl.CERT_NONE
try:
    print(urllib.request.urlopen("https://127.0.0.1:10250/pods", context=ctx, timeout=10).status)
except urllib.error.HTTPError as e:
    print(e.code)
"""


def _node(host, lab_vars, lab_secrets) -> None:
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
    # The registry over TLS, trusting the lab CA's certificate alone; its login only root can read.
    with host.sudo():
        hosts_toml = host.file(f"/etc/containerd/certs.d/127.0.0.1:{port}/hosts.toml").content_string
        ca = host.file(f"/etc/containerd/certs.d/127.0.0.1:{port}/ca.crt").content_string
        assert host.file("/etc/containerd/config.toml").mode == 0o600
    assert f'server = "https://127.0.0.1:{port}"' in hosts_toml
    assert ca.strip() == lab_ca.ca_cert(lab_secrets["renderlab_lab_ca"]).strip()
    _kubelet_is_closed_to_anonymous_callers(host)


def _kubelet_is_closed_to_anonymous_callers(host) -> None:
    """Set explicitly (issue 33), not left to defaults: no anonymous API, no read-only port."""
    with host.sudo():
        config = host.file("/var/lib/kubelet/config.yaml").content_string
        answer = host.check_output(f"python3 -c {shlex.quote(KUBELET_ANONYMOUS)}").strip()
    kubelet = yaml.safe_load(config)
    assert kubelet["authentication"]["anonymous"]["enabled"] is False
    assert kubelet["authorization"]["mode"] == "Webhook"
    assert kubelet.get("readOnlyPort", 0) == 0  # kubeadm writes the file without zero values: 0 is absent
    assert answer == "401", f"the kubelet answered an anonymous caller with {answer}"
    assert not host.socket("tcp://0.0.0.0:10255").is_listening


@pytest.mark.group("control_plane")
class TestControlPlane:
    def test_runtime_and_kubelet(self, host, lab_vars, lab_secrets):
        _node(host, lab_vars, lab_secrets)

    def test_api_server_and_private_config(self, host, lab_vars):
        assert host.socket("tcp://0.0.0.0:6443").is_listening or host.socket("tcp://:::6443").is_listening
        with host.sudo():
            for path in ("/etc/kubernetes/kubeadm-config.yaml", "/etc/kubernetes/admin.conf"):
                f = host.file(path)
                assert (f.user, f.mode) == ("root", 0o600), path

    def test_secrets_are_encrypted_at_rest_and_the_api_is_audited(self, host):
        with host.sudo():
            for path in ("/etc/kubernetes/encryption/config.yaml", "/etc/kubernetes/audit/policy.yaml"):
                f = host.file(path)
                assert (f.user, f.mode) == ("root", 0o600), path
            manifest = host.file("/etc/kubernetes/manifests/kube-apiserver.yaml").content_string
        assert "--encryption-provider-config=/etc/kubernetes/encryption/config.yaml" in manifest
        assert "--audit-log-path=/var/log/kubernetes/audit/audit.log" in manifest
        name, marker = f"renderlab-at-rest-{secrets.token_hex(4)}", secrets.token_hex(16)
        with host.sudo():
            host.check_output(
                f"{KUBECTL} -n default create secret generic {name} --from-literal=probe={marker}"
            )
            try:
                stored = host.check_output(
                    f"python3 -c {shlex.quote(ETCD_READ)} /registry/secrets/default/{name}"
                )
                for _ in range(20):  # the log backend writes as requests finish; give a busy node a moment
                    audit = host.run(f"grep -F {name} /var/log/kubernetes/audit/audit.log")
                    if audit.rc == 0:
                        break
                    time.sleep(1)
            finally:
                host.run(f"{KUBECTL} -n default delete secret {name} --wait=false")
        raw = base64.b64decode(stored)
        assert raw.startswith(b"k8s:enc:secretbox:v1:renderlab-1:"), raw[:40]
        assert marker.encode() not in raw and base64.b64encode(marker.encode()) not in raw
        events = [json.loads(line) for line in audit.stdout.splitlines()]
        created = [e for e in events if e["objectRef"].get("name") == name]
        assert any(e["verb"] == "create" and e["objectRef"]["resource"] == "secrets" for e in created)
        # Secrets are audited at Metadata: who made it, never what it holds.
        assert marker not in audit.stdout and all(e["level"] == "Metadata" for e in created)

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
        # Where the inventory sends it (the local lab: its state folder), else the role's default beside ansible/.
        dest = lab_vars.get("kube_control_plane_kubeconfig_dest") or os.environ.get("RENDERLAB_KUBECONFIG")
        kubeconfig = Path(dest or REPO / "kubeconfig")
        assert kubeconfig.exists(), "the kube_control_plane role did not fetch the kubeconfig"
        assert kubeconfig.stat().st_mode & 0o077 == 0, "kubeconfig is readable by others"
        assert f"https://{lab_vars['ansible_host']}:6443" in kubeconfig.read_text()


@pytest.mark.group("worker")
class TestWorker:
    def test_runtime_and_kubelet(self, host, lab_vars, lab_secrets):
        _node(host, lab_vars, lab_secrets)

    def test_no_join_configuration_left(self, host):
        with host.sudo():
            assert not host.file("/etc/kubernetes/kubeadm-join.yaml").exists
