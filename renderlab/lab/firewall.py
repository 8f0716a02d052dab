"""Who may reach which port of which lab host, derived once from the lab config (the hosts' firewall role
renders exactly this; docs/security.md explains each line).

Every host drops what is not listed. A rule is (name, protocol, ports, sources); `before_nat` marks a
Kubernetes NodePort, which kube-proxy turns into a forwarded packet before the input hook sees it, so the role
filters it where it enters the node (prerouting, before NAT). Sources are lab hosts' addresses, the workstation
(network.workstation, default the gateway) or the lab network.
"""

from __future__ import annotations

import ipaddress
from dataclasses import asdict, dataclass
from typing import Literal

from renderlab.lab import backup_plan
from renderlab.lab.config import ROLES, BackupToLabHost, LabConfig

SSH = 22
SMB = 445
AIRFLOW_API = 8080  # the airflow role's API server port (site.yml hands it this value)
KUBE_API = 6443
KUBELET = 10250
BGP = 179  # kube-router's node-to-node routes
# The Kubernetes NodePort range (the API server's --service-node-port-range default): every port in it that no
# rule opens is closed on the nodes.
NODEPORT_RANGE = (30000, 32767)

# Which lab roles are the cluster's control plane and which are nodes (the control plane is a node too).
CONTROL_PLANE_ROLES = ("control_plane",)
NODE_ROLES = ("control_plane", "worker")
# Every role is placed somewhere above or here (a renamed role fails the test that checks this).
SERVICE_ROLES = ("storage", "perforce", "airflow")

Proto = Literal["tcp", "udp", "ipip"]


@dataclass(frozen=True)
class Rule:
    name: str
    proto: Proto
    ports: tuple[int, ...]
    sources: tuple[str, ...]  # IPv4 networks, address/prefix
    before_nat: bool = False

    def as_var(self) -> dict:
        d = asdict(self)
        return {**d, "ports": list(self.ports), "sources": list(self.sources)}


def _nets(*groups: list[str]) -> tuple[str, ...]:
    """The networks merged (an address inside a listed network is dropped: nftables refuses overlapping
    intervals in one set), sorted, as 'a.b.c.d/n'."""
    nets = ipaddress.collapse_addresses(ipaddress.IPv4Network(a) for g in groups for a in g)
    return tuple(str(n) for n in sorted(nets))


def workstation(config: LabConfig) -> list[str]:
    return [str(n) for n in config.network.workstation_networks]


def _addresses(config: LabConfig, roles: tuple[str, ...]) -> list[str]:
    return [f"{config.address(n)}/32" for n, h in sorted(config.hosts.items()) if h.role in roles]


def host_rules(config: LabConfig) -> dict[str, list[Rule]]:
    """Each host's open ports beyond SSH from the workstation (every host has that: `workstation()`)."""
    ws = workstation(config)
    nodes = _addresses(config, NODE_ROLES)
    control = _addresses(config, CONTROL_PLANE_ROLES)
    airflow = _addresses(config, ("airflow",))
    by_role: dict[str, list[Rule]] = {
        "storage": [Rule("smb", "tcp", (SMB,), _nets(nodes, ws))],
        "perforce": [Rule("perforce", "tcp", (config.perforce.port,), _nets(nodes, ws))],
        "airflow": [Rule("airflow-api", "tcp", (AIRFLOW_API,), _nets(ws))],
    }
    node_rules = [
        Rule("kubelet", "tcp", (KUBELET,), _nets(control)),
        Rule("overlay-bgp", "tcp", (BGP,), _nets(nodes)),
        Rule("overlay-ipip", "ipip", (), _nets(nodes)),
        Rule("docs", "tcp", (config.docs.node_port,), _nets([str(config.network.cidr)], ws), before_nat=True),
        Rule("registry", "tcp", (config.pipeline.registry.node_port,), _nets(nodes, ws), before_nat=True),
    ]
    api = Rule("kube-api", "tcp", (KUBE_API,), _nets(nodes, airflow, ws))
    rules: dict[str, list[Rule]] = {}
    for name, host in sorted(config.hosts.items()):
        own = list(by_role.get(host.role, []))
        if host.role in CONTROL_PLANE_ROLES:
            own.append(api)
        if host.role in NODE_ROLES:
            own.extend(node_rules)
        rules[name] = own
    # A lab_host backup target: the backed-up hosts' restic reaches it over SFTP (SSH, a key that may only run
    # sftp-server in that host's folder: the backup role).
    if config.backup is not None and isinstance(config.backup.target, BackupToLabHost):
        clients = [f"{config.address(h)}/32" for h in sorted(backup_plan.data_sets(config))]
        rules[config.backup.target.host].append(Rule("backup-sftp", "tcp", (SSH,), _nets(clients)))
    return rules


def is_node(config: LabConfig, host: str) -> bool:
    return config.hosts[host].role in NODE_ROLES


def host_vars(config: LabConfig) -> dict[str, dict]:
    """Per-host inventory variables: the host's rules, and for a node its pod network and NodePort range."""
    out = {}
    for name, rules in host_rules(config).items():
        node = is_node(config, name)
        out[name] = {
            "renderlab_firewall_rules": [r.as_var() for r in rules],
            # Pods of a node reach the node itself (the API server, the kubelet's probes) from the pod network.
            "renderlab_firewall_local_networks": [str(config.kubernetes.pod_cidr)] if node else [],
            "renderlab_firewall_nodeport_range": list(NODEPORT_RANGE) if node else [],
        }
    return out


def unplaced_roles() -> list[str]:
    return sorted(set(ROLES) - set(NODE_ROLES) - set(SERVICE_ROLES))
