"""The dynamic resources: Pulumi's handles on the providers in infra/proxmox/."""

from __future__ import annotations

from typing import Any

import pulumi
from pulumi.dynamic import Resource

from infra.proxmox.template import CloudInitTemplateProvider
from infra.proxmox.vm import ProxmoxVmProvider


class CloudInitTemplate(Resource, module="renderlab", name="CloudInitTemplate"):
    """The cloud-init template (built from the pinned image, or adopted)."""

    built: pulumi.Output[bool]

    def __init__(self, name: str, props: dict[str, Any], opts: pulumi.ResourceOptions | None = None):
        super().__init__(CloudInitTemplateProvider(), name, {**props, "built": None}, opts)


class ProxmoxVm(Resource, module="renderlab", name="ProxmoxVm"):
    """One lab VM; `ipv4` is its static address, where its sshd answered after boot (infra/proxmox/guest.py)."""

    ipv4: pulumi.Output[str]
    vmid: pulumi.Output[int]
    name: pulumi.Output[str]

    def __init__(self, name: str, props: dict[str, Any], opts: pulumi.ResourceOptions | None = None):
        super().__init__(ProxmoxVmProvider(), name, {**props, "ipv4": None}, opts)
