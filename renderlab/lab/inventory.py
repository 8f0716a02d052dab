"""The Ansible inventory derived from the lab config (contract 2: Pulumi outputs -> Ansible inventory).

Addresses are static in the lab config, so the inventory's shape comes from the config alone; Pulumi
exports exactly this structure (plus nothing secret), and the local test lab uses the same shape.
Every lab value the roles need is derived here into `all.vars` (`renderlab_*`), so nothing from the stack
file is retyped in ansible/.

``python -m renderlab.lab.inventory STACK_FILE -o FILE`` writes the inventory (JSON, which is YAML; atomically),
with the image references `make images` recorded for that stack file. Every string in it is marked unsafe for
Ansible's templating (renderlab.lab.ansible_unsafe): a stack value is data, never a template.
"""

from __future__ import annotations

import sys
from typing import Any

from renderlab.base import atomic, cli
from renderlab.base.errors import CommandError
from renderlab.lab import ansible_unsafe, backup_plan, cluster_names, firewall, lab_ca
from renderlab.lab.config import ROLES, LabConfig, load
from renderlab.lab.pipeline_settings import pipeline_settings, recorded_images


def lab_vars(config: LabConfig, images: dict[str, str] | None = None) -> dict[str, Any]:
    """The lab config as `renderlab_*` variables for every play (no secrets: those come separately).
    `renderlab_pipeline_settings` is the DAG's whole configuration, which site.yml passes on unchanged."""
    v = config.versions
    return {
        "renderlab_admin_user": config.ssh.admin_user,
        "renderlab_ssh_public_keys": list(config.ssh.public_keys),
        "renderlab_network_cidr": str(config.network.cidr),
        "renderlab_gateway": str(config.network.gateway),
        "renderlab_dns": [str(a) for a in config.network.dns],
        "renderlab_search_domain": config.network.search_domain,
        "renderlab_host_addresses": {n: config.address(n) for n in sorted(config.hosts)},
        # Where Ansible runs from: the only source SSH is open to (renderlab/lab/firewall.py for the rest).
        "renderlab_workstation": firewall.workstation(config),
        "renderlab_airflow_api_port": firewall.AIRFLOW_API,
        "renderlab_debian_version": v.debian,
        "renderlab_airflow_version": v.airflow,
        "renderlab_blender_version": v.blender,
        "renderlab_p4d_version": v.p4d,
        **kubernetes_vars(config),
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
        "renderlab_registry_user": cluster_names.REGISTRY_USER,
        # The names each service's TLS certificate holds (issued from the lab CA, renderlab/lab/lab_ca.py).
        "renderlab_tls_sans": lab_ca.service_sans(config),
        "renderlab_launcher_token_secret": cluster_names.LAUNCHER_TOKEN,
        "renderlab_pipeline_settings": pipeline_settings(config, images),
        # Which host backs up what, and where (None without a backup section: site.yml skips the role).
        "renderlab_backup": backup_plan.plan(config),
    }


def kubernetes_vars(config: LabConfig) -> dict[str, str]:
    """The kubernetes section as `renderlab_kubernetes_version`, `renderlab_containerd_version`, ...,
    `renderlab_pod_cidr`, `renderlab_service_cidr` (the roles and kubeadm's config read these)."""
    k = config.kubernetes
    out = {}
    for name in type(k).model_fields:
        if name.endswith("_cidr"):
            out[f"renderlab_{name}"] = str(getattr(k, name))
        else:
            out[f"renderlab_{'kubernetes' if name == 'version' else name}_version"] = getattr(k, name)
    return out


def inventory(
    config: LabConfig,
    ssh_user: str | None = None,
    extra_host_vars: dict | None = None,
    extra_vars: dict | None = None,
    images: dict[str, str] | None = None,
) -> dict:
    """Ansible YAML inventory: groups control_plane, worker, storage, perforce, airflow under `all`."""
    extra_host_vars = extra_host_vars or {}
    children: dict[str, Any] = {role: {"hosts": {}} for role in ROLES}
    firewall_vars = firewall.host_vars(config)
    for name, host in sorted(config.hosts.items()):
        host_vars = {"ansible_host": config.address(name), "renderlab_vmid": host.vmid, **firewall_vars[name]}
        host_vars.update(extra_host_vars.get(name, {}))
        children[host.role]["hosts"][name] = host_vars
    all_vars = {
        "ansible_user": ssh_user or config.ssh.admin_user,
        **lab_vars(config, images),
        **(extra_vars or {}),
    }
    return {"all": {"vars": all_vars, "children": children}}


@cli.command("inventory")
def main(argv: list[str] | None = None) -> int:
    parser = cli.Parser(
        prog="python -m renderlab.lab.inventory",
        description="Write the Ansible inventory for a lab stack file.",
    )
    parser.add_argument("stack_file", help="a Pulumi.<stack>.yaml file")
    parser.add_argument("-o", "--output", required=True, help="inventory file to write (YAML)")
    parser.add_argument("--ssh-user", help="SSH user (default: ssh.admin_user from the stack file)")
    args = parser.parse_args(argv)
    config = load(args.stack_file)
    images = recorded_images(config, args.stack_file)
    try:
        inv = inventory(config, ssh_user=args.ssh_user, images=images)
        atomic.write_text(args.output, ansible_unsafe.dumps(inv), mode=0o644)
    except OSError as e:
        raise CommandError(f"cannot write {args.output}: {e.strerror or e}") from None
    print(f"{args.output}: {len(config.hosts)} hosts from {args.stack_file}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
