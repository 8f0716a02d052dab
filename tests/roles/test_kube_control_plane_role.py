"""The kube_control_plane role without a lab: the kubeadm configuration it renders (with Ansible's own Templar,
from the role's defaults and the local lab's own overrides) turns on encryption at rest and the audit log, and
sets the kubelet's hardening explicitly where no lab override can turn it off; the encryption config holds the
key as the 32 bytes the API server's secretbox provider wants."""

from __future__ import annotations

import base64
from pathlib import Path

import yaml
from ansible.parsing.dataloader import DataLoader
from ansible.template import Templar

from renderlab.workstation.nspawn_lab.cluster_node import OVERRIDES

ROOT = Path(__file__).resolve().parents[2]
ROLE = ROOT / "ansible" / "roles" / "kube_control_plane"
KEY = base64.b64encode(bytes(range(200, 232))).decode()  # 32 bytes, base64: as the generated secret is


def render(template: str, **overrides) -> list[dict]:
    loader = DataLoader()
    variables = {
        "ansible_managed": "managed",
        "inventory_hostname": "control-plane",
        "ansible_host": "10.0.0.2",
    }
    variables |= loader.load_from_file(str(ROLE / "defaults" / "main.yml"))
    variables |= {
        "kube_control_plane_version": "v1.35.8",
        "kube_control_plane_pod_subnet": "10.244.0.0/16",
        "kube_control_plane_service_subnet": "10.96.0.0/12",
        "kube_control_plane_kube_router_image": "example/kube-router:v2.1.0",
        "kube_control_plane_encryption_key": KEY,
        **overrides,
    }
    templar = Templar(loader=loader, variables=variables)
    text = templar.template((ROLE / "templates" / template).read_text(), escape_backslashes=False)
    return [d for d in yaml.safe_load_all(text) if d]


def by_kind(docs: list[dict]) -> dict[str, dict]:
    return {d["kind"]: d for d in docs}


def test_the_api_server_encrypts_secrets_and_keeps_an_audit_log():
    api = by_kind(render("kubeadm-config.yaml.j2"))["ClusterConfiguration"]["apiServer"]
    args = {a["name"]: a["value"] for a in api["extraArgs"]}
    assert args["encryption-provider-config"] == "/etc/kubernetes/encryption/config.yaml"
    assert args["audit-policy-file"] == "/etc/kubernetes/audit/policy.yaml"
    assert args["audit-log-path"] == "/var/log/kubernetes/audit/audit.log"
    assert (args["audit-log-maxsize"], args["audit-log-maxbackup"]) == ("100", "4")
    mounts = {v["mountPath"]: v for v in api["extraVolumes"]}
    # Every file the flags name is inside a folder mounted into the API server's pod; the key read-only.
    for flag in ("encryption-provider-config", "audit-policy-file", "audit-log-path"):
        assert str(Path(args[flag]).parent) in mounts, flag
    assert mounts["/etc/kubernetes/encryption"]["readOnly"] is True


def test_the_kubelet_hardening_survives_the_local_labs_overrides():
    hostile = {"authentication": {"anonymous": {"enabled": True}}, "readOnlyPort": 10255}
    for kubelet_config in (OVERRIDES["kubelet_config"], {**OVERRIDES["kubelet_config"], **hostile}):
        kubelet = by_kind(render("kubeadm-config.yaml.j2", kube_control_plane_kubelet_config=kubelet_config))[
            "KubeletConfiguration"
        ]
        assert kubelet["authentication"] == {"anonymous": {"enabled": False}, "webhook": {"enabled": True}}
        assert kubelet["authorization"] == {"mode": "Webhook"}
        assert kubelet["readOnlyPort"] == 0
        assert kubelet["failCgroupV1"] is False  # the lab's own settings still arrive


def test_the_encryption_config_holds_the_key_as_32_bytes_and_reads_old_plaintext():
    (config,) = render("encryption-config.yaml.j2")
    (rule,) = config["resources"]
    assert rule["resources"] == ["secrets"]
    first, last = rule["providers"]
    (key,) = first["secretbox"]["keys"]
    assert key["secret"] == KEY and len(base64.b64decode(key["secret"], validate=True)) == 32
    assert last == {"identity": {}}  # last: Secrets written before encryption stay readable, never written so


def test_the_audit_policy_never_logs_a_secrets_contents():
    (policy,) = render("audit-policy.yaml.j2")
    assert policy["kind"] == "Policy"
    for rule in policy["rules"]:
        groups = rule.get("resources", [])
        if any("secrets" in g.get("resources", []) for g in groups):
            assert rule["level"] == "Metadata"
            break
        # no earlier rule may catch Secrets at a level that records request bodies
        assert not (rule["level"] in ("Request", "RequestResponse") and not groups)
    else:
        raise AssertionError("no rule names secrets")
