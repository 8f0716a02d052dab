"""The Pulumi dynamic provider for the cloud-init template the lab VMs are cloned from.

build (adopt: false): PVE downloads the pinned Debian generic cloud image to the image storage (content type
'import', checksum verified by PVE), a VM is created whose disk is imported from it, with a cloud-init drive,
a serial console and the guest agent on, and converted to a template. A step already done is skipped (the
image already on the storage, a template already at the VMID with the configured name), so a re-run after a
failure finishes the job instead of failing on what exists.
adopt (adopt: true): an existing template at the VMID is used as is; delete leaves it alone.
"""

from __future__ import annotations

import logging
import re
from typing import Any
from urllib.parse import urlsplit

import requests
from pulumi.dynamic import (
    CheckFailure,
    CheckResult,
    CreateResult,
    DiffResult,
)
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from infra.proxmox.client import Connection, ProxmoxError, Pve
from infra.proxmox.provider import PveProvider, check_failures, problems
from renderlab.lab.patterns import ImageUrl, PveBridge, PveEndpoint, PveStorage, PveTokenId, Sha512

log = logging.getLogger("renderlab.proxmox.template")


class TemplateSpec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    endpoint: PveEndpoint
    token_id: PveTokenId
    verify_tls: bool = True
    ca_file: str | None = None
    node: str
    vmid: int = Field(ge=100, le=999_999_999)
    name: str
    adopt: bool = False
    storage: PveStorage
    image_storage: PveStorage
    bridge: PveBridge
    image_url: ImageUrl | None = None
    image_sha512: Sha512 | None = None

    @property
    def connection(self) -> Connection:
        return Connection(self.endpoint, self.token_id, self.verify_tls, self.ca_file)

    @property
    def image_file(self) -> str:
        return urlsplit(self.image_url or "").path.rsplit("/", 1)[-1]


def parse_template(props: dict[str, Any]) -> TemplateSpec:
    try:
        return TemplateSpec.model_validate({k: v for k, v in props.items() if k in TemplateSpec.model_fields})
    except ValidationError as err:
        raise ProxmoxError(f"invalid CloudInitTemplate inputs:\n{problems(err)}") from err


def published_sha512(image_url: str, timeout: float = 30) -> str:
    """The image's SHA-512 from the SHA512SUMS file published beside it."""
    sums_url = image_url.rsplit("/", 1)[0] + "/SHA512SUMS"
    name = image_url.rsplit("/", 1)[-1]
    try:
        resp = requests.get(sums_url, timeout=timeout)
        resp.raise_for_status()
    except requests.RequestException as err:
        raise ProxmoxError(
            f"cannot read {sums_url} to verify the image ({err}); set proxmox.template.image_sha512 instead"
        ) from err
    for line in resp.text.splitlines():
        digest, _, file = line.strip().partition("  ")
        if file.lstrip("*") == name and re.fullmatch(r"[0-9a-f]{128}", digest):
            return digest
    raise ProxmoxError(f"{sums_url} lists no SHA-512 for {name}; set proxmox.template.image_sha512")


class CloudInitTemplateProvider(PveProvider):
    def check(self, _olds: dict[str, Any], news: dict[str, Any]) -> CheckResult:
        data = {k: v for k, v in news.items() if k in TemplateSpec.model_fields}
        try:
            spec = TemplateSpec.model_validate(data)
        except ValidationError as err:
            return CheckResult(news, check_failures(err))
        if not spec.adopt and not spec.image_url:
            return CheckResult(news, [CheckFailure("image_url", "required unless adopt is true")])
        return CheckResult(news, [])

    def diff(self, _id: str, olds: dict[str, Any], news: dict[str, Any]) -> DiffResult:
        old, new = parse_template(olds), parse_template(news)
        keys = ("endpoint", "node", "vmid", "name", "adopt", "storage", "image_storage", "image_url")
        changed = [k for k in keys if getattr(old, k) != getattr(new, k)]
        # A new image or place means a new template; clones made from the old one keep their own disks.
        return DiffResult(changes=bool(changed), replaces=changed, delete_before_replace=True)

    def create(self, props: dict[str, Any]) -> CreateResult:
        spec = parse_template(props)
        pve = self._client(spec)
        node, vmid = spec.node, spec.vmid
        config = pve.vm_config(node, vmid)
        if config is not None:
            if str(config.get("template", "0")) != "1":
                raise ProxmoxError(
                    f"VMID {vmid} on {node} is a VM, not a template; pick another proxmox.template.vmid"
                )
            if not spec.adopt and config.get("name") != spec.name:
                raise ProxmoxError(
                    f"VMID {vmid} on {node} is a template named {config.get('name')!r}, not {spec.name!r}; "
                    "set proxmox.template.adopt: true to use it, or pick another vmid"
                )
            log.info("template %s on %s exists; adopting it", vmid, node)
            return CreateResult(str(vmid), {**spec.model_dump(), "built": False})
        if spec.adopt:
            raise ProxmoxError(
                f"proxmox.template.adopt is true but there is no template at VMID {vmid} on {node}; "
                "create it or set adopt: false to build it from image_url"
            )
        if not spec.image_url:
            raise ProxmoxError("proxmox.template.image_url is required to build the template")
        volume = f"{spec.image_storage}:import/{spec.image_file}"
        if not self._has_image(pve, spec, volume):
            digest = spec.image_sha512 or published_sha512(spec.image_url)
            pve.download_url(
                node,
                spec.image_storage,
                f"download {spec.image_file} to {spec.image_storage}",
                url=spec.image_url,
                content="import",
                filename=spec.image_file,
                checksum=digest,
                **{"checksum-algorithm": "sha512", "verify-certificates": 1},
            )
        try:
            pve.create_vm(
                node,
                vmid,
                f"create template VM {vmid}",
                name=spec.name,
                ostype="l26",
                cores=1,
                memory=1024,
                scsihw="virtio-scsi-single",
                scsi0=f"{spec.storage}:0,import-from={volume}",
                ide2=f"{spec.storage}:cloudinit",
                boot="order=scsi0",
                serial0="socket",
                vga="serial0",
                agent="enabled=1",
                net0=f"virtio,bridge={spec.bridge}",
            )
            pve.make_template(node, vmid)
        except Exception:
            self._destroy(pve, node, vmid)
            raise
        return CreateResult(str(vmid), {**spec.model_dump(), "built": True})

    @staticmethod
    def _has_image(pve: Pve, spec: TemplateSpec, volume: str) -> bool:
        content = pve.storage_content(spec.node, spec.image_storage, "import")
        return any(item.get("volid") == volume for item in content)

    def delete(self, id_: str, props: dict[str, Any]) -> None:
        if not props.get("built"):
            return  # adopted: not ours to remove
        spec = parse_template(props)
        self._destroy(self._client(spec), spec.node, int(id_))

    @staticmethod
    def _destroy(pve: Pve, node: str, vmid: int) -> None:
        if pve.vm_status(node, vmid) is None:
            return
        pve.wait_unlocked(node, vmid)
        pve.destroy_vm(node, vmid, f"destroy template {vmid}")
