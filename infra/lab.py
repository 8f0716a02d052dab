"""The Lab component: the template, the five VMs and the generated service secrets, all from the config."""

from __future__ import annotations

from typing import Any

import pulumi

from infra.generated_secret import GeneratedSecret
from infra.resources import CloudInitTemplate, ProxmoxVm
from renderlab.lab import ansible_unsafe
from renderlab.lab.config import LabConfig
from renderlab.lab.host_secrets import SERVICE_SECRETS, WEBHOOK_URL
from renderlab.lab.inventory import inventory

# The generated service secrets (renderlab.lab.host_secrets owns their names) leave the stack only as the
# secret output `host_secrets`, which the hosts layer turns into a 0600 vars file for Ansible.


def connection(config: LabConfig) -> dict[str, Any]:
    px = config.proxmox
    return {
        "endpoint": px.endpoint.rstrip("/"),
        "token_id": px.token_id,
        "verify_tls": px.verify_tls,
        "ca_file": px.ca_file,
        "node": px.node,
    }


def vm_props(config: LabConfig, name: str) -> dict[str, Any]:
    host, net, px = config.hosts[name], config.network, config.proxmox
    return {
        **connection(config),
        "vmid": host.vmid,
        "name": name,
        "template_vmid": px.template.vmid,
        "storage": px.storage,
        "bridge": px.bridge,
        "cores": host.cores,
        "memory_mib": host.memory_mib,
        "disk_gib": host.disk_gib,
        "address": f"{config.address(name)}/{config.prefix_len}",
        "gateway": str(net.gateway),
        "dns": [str(d) for d in net.dns],
        "search_domain": net.search_domain,
        "ssh_user": config.ssh.admin_user,
        "ssh_keys": list(config.ssh.public_keys),
        "tags": ["renderlab", host.role],
    }


def template_props(config: LabConfig) -> dict[str, Any]:
    px = config.proxmox
    tpl = px.template
    return {
        **connection(config),
        "vmid": tpl.vmid,
        "name": tpl.name,
        "adopt": tpl.adopt,
        "storage": px.storage,
        "image_storage": px.image_storage,
        "bridge": px.bridge,
        "image_url": tpl.image_url,
        "image_sha512": tpl.image_sha512,
    }


class Lab(pulumi.ComponentResource):
    """Five VMs from one template, plus the generated secrets the services use."""

    def __init__(
        self,
        name: str,
        config: LabConfig,
        images: dict[str, str] | None = None,
        webhook_url: pulumi.Output[str] | None = None,
        opts: pulumi.ResourceOptions | None = None,
    ):
        super().__init__("renderlab:index:Lab", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        self.template = CloudInitTemplate("template", template_props(config), child)
        self.vms: dict[str, ProxmoxVm] = {}
        for host in sorted(config.hosts):
            self.vms[host] = ProxmoxVm(
                host,
                vm_props(config, host),
                pulumi.ResourceOptions(parent=self, depends_on=[self.template]),
            )
        self.secrets: dict[str, pulumi.Output[str]] = {}
        for key, (length, _why) in SERVICE_SECRETS.items():
            pw = GeneratedSecret(
                key.removeprefix("renderlab_").replace("_", "-"),
                length,
                pulumi.ResourceOptions(parent=self),
            )
            self.secrets[key] = pulumi.Output.secret(pw.result)
        # The Ansible inventory: its shape comes from the config; it is ready once every VM answered.
        # Every string marked unsafe for Ansible's templating (renderlab.lab.ansible_unsafe): stack values are data.
        inv = ansible_unsafe.mark(inventory(config, images=images))
        self.inventory = pulumi.Output.all(*(vm.ipv4 for vm in self.vms.values())).apply(lambda _: inv)
        self.addresses = {host: vm.ipv4 for host, vm in self.vms.items()}
        # The stack's own notify_webhook_url rides along (the airflow role makes it the notify connection).
        handed = {**self.secrets, **({WEBHOOK_URL: webhook_url} if webhook_url is not None else {})}
        self.host_secrets = pulumi.Output.secret(pulumi.Output.all(**handed))
        self.register_outputs({"inventory": self.inventory, "addresses": self.addresses})
