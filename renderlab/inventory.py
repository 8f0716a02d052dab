"""The Ansible inventory derived from the lab config (contract 2: Pulumi outputs -> Ansible inventory).

Addresses are static in the lab config, so the inventory's shape comes from the config alone; Pulumi
exports exactly this structure (plus nothing secret), and the local test lab uses the same shape.
"""

from __future__ import annotations

from typing import Any

from renderlab.config import ROLES, LabConfig


def inventory(config: LabConfig, ssh_user: str | None = None, extra_host_vars: dict | None = None) -> dict:
    """Ansible YAML inventory: groups k3s_server, k3s_agent, storage, perforce, airflow under `all`."""
    extra_host_vars = extra_host_vars or {}
    children: dict[str, Any] = {role: {"hosts": {}} for role in ROLES}
    for name, host in sorted(config.hosts.items()):
        host_vars = {"ansible_host": config.address(name), "renderlab_vmid": host.vmid}
        host_vars.update(extra_host_vars.get(name, {}))
        children[host.role]["hosts"][name] = host_vars
    return {
        "all": {
            "vars": {"ansible_user": ssh_user or config.ssh.admin_user},
            "children": children,
        }
    }
