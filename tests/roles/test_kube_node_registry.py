"""What the nodes' containerd is told about the lab registry, rendered through Ansible's Templar from site.yml's
own wiring: TLS on loopback trusting the lab CA's certificate alone (the public half of the secret bundle), and
the registry's login in the root-only config.toml."""

from __future__ import annotations

import tomllib
from pathlib import Path

import yaml
from ansible.parsing.dataloader import DataLoader
from ansible.template import Templar

from renderlab.lab import host_secrets, lab_ca
from renderlab.lab.config import load
from renderlab.lab.inventory import inventory

ROOT = Path(__file__).resolve().parents[2]
ROLE = ROOT / "ansible" / "roles" / "kube_node"


def _render() -> tuple[dict, str, str, dict]:
    plays = yaml.safe_load((ROOT / "ansible" / "site.yml").read_text())
    (play,) = [p for p in plays if p.get("roles") and p["roles"][0]["role"] == "kube_node"]
    secrets = host_secrets.generate()
    inv = inventory(load(ROOT / "Pulumi.example.yaml"))
    variables = {**inv["all"]["vars"], **secrets, "renderlab_kube_lab": {}, "ansible_managed": "managed"}
    role_vars = Templar(loader=DataLoader(), variables=variables).template(play["roles"][0]["vars"])
    defaults = yaml.safe_load((ROLE / "defaults" / "main.yml").read_text())
    templar = Templar(loader=DataLoader(), variables={**defaults, **variables, **role_vars})
    hosts = templar.template((ROLE / "templates" / "registry-hosts.toml.j2").read_text())
    config = templar.template((ROLE / "templates" / "containerd-config.toml.j2").read_text())
    return role_vars, hosts, config, secrets


def test_containerd_pulls_over_tls_trusting_the_lab_ca_with_the_registry_login():
    role_vars, hosts, config, secrets = _render()
    # The CA's certificate only: the key half of the bundle never reaches a node.
    assert role_vars["kube_node_registry_ca"].strip() == lab_ca.ca_cert(secrets[host_secrets.LAB_CA]).strip()
    assert "PRIVATE" not in role_vars["kube_node_registry_ca"]
    port = role_vars["kube_node_registry_port"]
    parsed = tomllib.loads(hosts)
    assert parsed["server"] == f"https://127.0.0.1:{port}"
    (host,) = parsed["host"].values()
    assert host["ca"] == f"/etc/containerd/certs.d/127.0.0.1:{port}/ca.crt"
    auth = tomllib.loads(config)["plugins"]["io.containerd.cri.v1.images"]["registry"]["configs"][
        f"127.0.0.1:{port}"
    ]["auth"]
    assert auth == {"username": "renderlab", "password": secrets["renderlab_registry_password"]}
