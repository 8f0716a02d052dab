"""The Ansible inventory derived from the lab config (contract 2: Pulumi outputs -> Ansible inventory).

Addresses are static in the lab config, so the inventory's shape comes from the config alone; Pulumi
exports exactly this structure (plus nothing secret), and the local test lab uses the same shape.
Every lab value the roles need is derived here into `all.vars` (`renderlab_*`), so nothing from the stack
file is retyped in ansible/.

``python -m renderlab.lab.inventory STACK_FILE -o FILE`` writes the inventory as YAML (atomically).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path
from typing import Any

import yaml

from renderlab.lab.config import ROLES, ConfigError, LabConfig, load


def lab_vars(config: LabConfig) -> dict[str, Any]:
    """The lab config as flat `renderlab_*` variables for every play (no secrets: those come separately)."""
    v = config.versions
    return {
        "renderlab_admin_user": config.ssh.admin_user,
        "renderlab_ssh_public_keys": list(config.ssh.public_keys),
        "renderlab_network_cidr": str(config.network.cidr),
        "renderlab_gateway": str(config.network.gateway),
        "renderlab_dns": [str(a) for a in config.network.dns],
        "renderlab_search_domain": config.network.search_domain,
        "renderlab_host_addresses": {n: config.address(n) for n in sorted(config.hosts)},
        "renderlab_debian_version": v.debian,
        "renderlab_k3s_version": v.k3s,
        "renderlab_airflow_version": v.airflow,
        "renderlab_blender_version": v.blender,
        "renderlab_p4d_version": v.p4d,
        "renderlab_share_name": config.share.name,
        "renderlab_share_path": config.share.path,
        "renderlab_share_user": config.share.user,
        "renderlab_share_uid": config.share.uid,
        "renderlab_perforce_port": config.perforce.port,
        "renderlab_perforce_ssl": config.perforce.ssl,
        "renderlab_perforce_depot": config.perforce.depot,
        "renderlab_perforce_projects_path": config.perforce.projects_path,
        "renderlab_perforce_service_user": config.perforce.service_user,
        "renderlab_perforce_data_root": config.perforce.data_root,
        "renderlab_pipeline_namespace": config.pipeline.namespace,
        "renderlab_registry_node_port": config.pipeline.registry.node_port,
    }


def inventory(
    config: LabConfig,
    ssh_user: str | None = None,
    extra_host_vars: dict | None = None,
    extra_vars: dict | None = None,
) -> dict:
    """Ansible YAML inventory: groups k3s_server, k3s_agent, storage, perforce, airflow under `all`."""
    extra_host_vars = extra_host_vars or {}
    children: dict[str, Any] = {role: {"hosts": {}} for role in ROLES}
    for name, host in sorted(config.hosts.items()):
        host_vars = {"ansible_host": config.address(name), "renderlab_vmid": host.vmid}
        host_vars.update(extra_host_vars.get(name, {}))
        children[host.role]["hosts"][name] = host_vars
    all_vars = {"ansible_user": ssh_user or config.ssh.admin_user, **lab_vars(config), **(extra_vars or {})}
    return {"all": {"vars": all_vars, "children": children}}


def write_yaml(path: Path, data: Any, mode: int = 0o644) -> None:
    """Write YAML under a temporary name, then rename: a reader never sees half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            yaml.safe_dump(data, f, sort_keys=False)
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Write the Ansible inventory for a lab stack file.")
    parser.add_argument("stack_file", help="a Pulumi.<stack>.yaml file")
    parser.add_argument("-o", "--output", required=True, help="inventory file to write (YAML)")
    parser.add_argument("--ssh-user", help="SSH user (default: ssh.admin_user from the stack file)")
    args = parser.parse_args(argv)
    try:
        config = load(args.stack_file)
    except ConfigError as e:
        print(e, file=sys.stderr)
        return 1
    write_yaml(Path(args.output), inventory(config, ssh_user=args.ssh_user))
    print(f"{args.output}: {len(config.hosts)} hosts from {args.stack_file}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
