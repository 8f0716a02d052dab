"""The Pulumi dynamic provider for one lab VM, cloned from the cloud-init template.

create: clone (full) -> cores, memory, NIC on the bridge, cloud-init user + SSH keys + static address + DNS,
        qemu agent on -> resize the disk -> check that nothing else answers SSH on the address -> start ->
        wait for the guest's sshd on that static address (not the guest agent: a stock cloud image has none;
        infra/proxmox/guest.py says why).
        Any failure after the clone removes the half-made VM before the error is raised.
diff:   only the keys this provider manages, normalized, so an unchanged config diffs empty.
update: in place where PVE allows (cores, memory, cloud-init settings, bridge, a larger disk); a change that
        needs a reboot to apply (pending config) is applied by rebooting the VM. A node, VMID, template,
        storage, endpoint change or a smaller disk replaces the VM (PVE cannot move or shrink in place).
delete: stop, destroy and purge; a VM that is already gone counts as deleted.

The proxmoxer client is built inside each method from the inputs' Connection (no secret) and the token
secret that `configure` read from the stack config or the environment; the secret never enters the state.
"""

from __future__ import annotations

import ipaddress
import logging
from typing import Annotated, Any
from urllib.parse import quote

from pulumi.dynamic import (
    CheckResult,
    CreateResult,
    DiffResult,
    ReadResult,
    UpdateResult,
)
from pydantic import BaseModel, ConfigDict, Field, StringConstraints, ValidationError, model_validator

from infra.proxmox import guest
from infra.proxmox.client import Connection, ProxmoxError, Pve, describe
from infra.proxmox.provider import PveProvider, check_failures, problems
from renderlab.lab import known_hosts
from renderlab.lab.patterns import LinuxUser, PveBridge, PveEndpoint, PveStorage, PveTokenId, SshPublicKey

log = logging.getLogger("renderlab.proxmox.vm")

# Keys whose change replaces the VM, and those updated in place. Everything else is not managed.
REPLACE_KEYS = ("endpoint", "node", "vmid", "template_vmid", "storage")
UPDATE_KEYS = (
    "name",
    "cores",
    "memory_mib",
    "disk_gib",
    "bridge",
    "address",
    "gateway",
    "dns",
    "search_domain",
    "ssh_user",
    "ssh_keys",
    "tags",
)
# Not part of the VM; changing them changes how we connect, not what exists.
CONNECTION_KEYS = ("token_id", "verify_tls", "ca_file")

Hostname = Annotated[str, StringConstraints(pattern=r"^[a-z][a-z0-9-]{0,61}[a-z0-9]$")]


class VmSpec(BaseModel):
    """The inputs of a ProxmoxVm resource (all plain values: no secret in here)."""

    model_config = ConfigDict(extra="forbid", frozen=True, str_strip_whitespace=True)

    endpoint: PveEndpoint
    token_id: PveTokenId
    verify_tls: bool = True
    ca_file: str | None = None
    node: Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9][A-Za-z0-9.-]*$")]
    vmid: int = Field(ge=100, le=999_999_999)
    name: Hostname
    template_vmid: int = Field(ge=100, le=999_999_999)
    storage: PveStorage
    bridge: PveBridge
    cores: int = Field(ge=1, le=128)
    memory_mib: int = Field(ge=512, le=1_048_576)
    disk_gib: int = Field(ge=1, le=65_536)
    address: ipaddress.IPv4Interface  # 10.20.0.11/24
    gateway: ipaddress.IPv4Address
    dns: list[ipaddress.IPv4Address] = Field(min_length=1)
    search_domain: str
    ssh_user: LinuxUser
    ssh_keys: list[SshPublicKey] = Field(min_length=1)
    tags: list[Annotated[str, StringConstraints(pattern=r"^[a-z0-9_][a-z0-9_.+-]*$")]] = []

    @model_validator(mode="after")
    def _gateway_on_link(self) -> VmSpec:
        if self.gateway not in self.address.network:
            raise ValueError(f"gateway {self.gateway} is outside the VM's network {self.address.network}")
        if self.vmid == self.template_vmid:
            raise ValueError(f"vmid {self.vmid} is the template's VMID; give the VM its own")
        return self

    @property
    def connection(self) -> Connection:
        return Connection(self.endpoint, self.token_id, self.verify_tls, self.ca_file)

    def normalized(self) -> dict[str, Any]:
        """The managed keys in one canonical form (what diff compares)."""
        data = self.model_dump(mode="json")
        data["endpoint"] = data["endpoint"].rstrip("/")
        data["ssh_keys"] = [" ".join(k.split()) for k in data["ssh_keys"]]
        data["tags"] = sorted(set(data["tags"]))
        return data

    def pve_config(self) -> dict[str, Any]:
        """The VM config PVE stores for this spec (the keys set after the clone)."""
        return {
            "name": self.name,
            "cores": self.cores,
            "memory": self.memory_mib,
            "net0": f"virtio,bridge={self.bridge}",
            "agent": "enabled=1",
            "onboot": 1,
            "ciuser": self.ssh_user,
            # PVE wants the keys URL-encoded (it decodes them before writing the cloud-init drive).
            "sshkeys": quote("\n".join(self.ssh_keys) + "\n", safe=""),
            "ipconfig0": f"ip={self.address.with_prefixlen},gw={self.gateway}",
            "nameserver": " ".join(str(d) for d in self.dns),
            "searchdomain": self.search_domain,
            "tags": ";".join(sorted(set(self.tags))) or None,
        }


def parse_spec(props: dict[str, Any]) -> VmSpec:
    data = {k: v for k, v in props.items() if k in VmSpec.model_fields}
    try:
        return VmSpec.model_validate(data)
    except ValidationError as err:
        raise ProxmoxError(f"invalid ProxmoxVm inputs:\n{problems(err)}") from err


def _disk_key(config: dict[str, Any]) -> str:
    """The boot disk of a cloned VM (the template's imported disk)."""
    boot = str(config.get("boot", ""))
    if boot.startswith("order="):
        for dev in boot[len("order=") :].split(";"):
            if dev in config and "media=cdrom" not in str(config[dev]):
                return dev
    for prefix in ("scsi", "virtio", "sata", "ide"):
        for key in sorted(config):
            if (
                key.startswith(prefix)
                and key[len(prefix) :].isdigit()
                and "media=cdrom" not in str(config[key])
            ):
                return key
    raise ProxmoxError(
        "the template has no disk to boot from; rebuild it (see docs/building.md, Build the lab)"
    )


class ProxmoxVmProvider(PveProvider):
    """Dynamic provider for one VM."""

    # ---------------------------------------------------------------- check

    def check(self, _olds: dict[str, Any], news: dict[str, Any]) -> CheckResult:
        data = {k: v for k, v in news.items() if not k.startswith("__")}
        try:
            VmSpec.model_validate(data)
        except ValidationError as err:
            return CheckResult(news, check_failures(err))
        return CheckResult(news, [])

    # ----------------------------------------------------------------- diff

    def diff(self, _id: str, olds: dict[str, Any], news: dict[str, Any]) -> DiffResult:
        old = parse_spec(olds).normalized()
        new = parse_spec(news).normalized()
        changed = [k for k in REPLACE_KEYS + UPDATE_KEYS if old[k] != new[k]]
        replaces = [k for k in changed if k in REPLACE_KEYS]
        if new["disk_gib"] < old["disk_gib"]:
            replaces.append("disk_gib")  # PVE cannot shrink a disk
        connection = [k for k in CONNECTION_KEYS if old[k] != new[k]]
        return DiffResult(
            changes=bool(changed or connection),
            replaces=replaces,
            stables=[k for k in REPLACE_KEYS if k not in replaces],
            # The VMID is fixed by config: the old VM must go before the new one can take it.
            delete_before_replace=True,
        )

    # --------------------------------------------------------------- create

    def create(self, props: dict[str, Any]) -> CreateResult:
        spec = parse_spec(props)
        pve = self._client(spec)
        node, vmid = spec.node, spec.vmid
        existing = pve.vm_config(node, vmid)
        if existing is not None:
            raise ProxmoxError(
                f"VMID {vmid} already exists on {node} (name {existing.get('name')!r}); it is not in this "
                "stack's state. Pick another vmid in the stack config, or remove that VM first"
            )
        template = pve.vm_config(node, spec.template_vmid)
        if template is None or not str(template.get("template", "0")) == "1":
            raise ProxmoxError(
                f"template VMID {spec.template_vmid} on {node} is missing or not a template; run "
                "`pulumi up` so the template resource is built, or set proxmox.template.adopt: false"
            )
        cloned = False
        try:
            with pve.clone_slot(node):
                pve.clone_vm(node, spec.template_vmid, vmid, spec.name, spec.storage)
            cloned = True
            outs = self._configure_and_start(pve, spec)
        except BaseException as err:
            # The VMID was free when we checked; after a failed clone, only a VM with our name is ours (another
            # client may have taken the VMID in between).
            try:
                left = pve.vm_config(node, vmid)
            except Exception:
                raise err from None  # cannot tell what is left; the original error matters most
            if left is None or (not cloned and left.get("name") != spec.name):
                raise
            log.error("create of VM %s failed (%s); removing the half-made VM", vmid, err)
            try:
                self._destroy(pve, node, vmid)
            except Exception as cleanup:  # keep the original error; say the cleanup failed too
                raise ProxmoxError(
                    f"{err}\n  and removing the half-made VM {vmid} failed too: {describe(cleanup)}; "
                    f"remove it by hand (`qm stop {vmid}; qm destroy {vmid} --purge`)"
                ) from err
            raise
        return CreateResult(str(vmid), outs)

    def _configure_and_start(self, pve: Pve, spec: VmSpec) -> dict[str, Any]:
        node, vmid = spec.node, spec.vmid
        pve.wait_unlocked(node, vmid)
        config = {k: v for k, v in spec.pve_config().items() if v is not None}
        pve.set_vm_config(node, vmid, **config)
        self._grow_disk(pve, spec)
        address = str(spec.address.ip)
        squatter = guest.ssh_banner(address)
        if squatter:
            # Waiting for SSH must not mistake another machine for this VM.
            raise ProxmoxError(
                f"{address} already answers SSH ({squatter}) before VM {vmid} started: another machine holds "
                f"that address; give {spec.name} a free one in network.hosts"
            )
        # A new VM has new host keys: the lab's known_hosts forgets the address's old ones, and `make
        # lab-known-hosts` records the new on first contact (renderlab/lab/known_hosts.py).
        known_hosts.forget(address)
        pve.vm_power(node, vmid, "start")
        self._wait_up(pve, spec)
        return self._outs(spec)

    @staticmethod
    def _wait_up(pve: Pve, spec: VmSpec) -> None:
        t = pve.timing
        guest.wait_ssh(str(spec.address.ip), f"VM {spec.vmid} ({spec.name})", t.boot_timeout, t.poll)

    def _grow_disk(self, pve: Pve, spec: VmSpec) -> None:
        node, vmid = spec.node, spec.vmid
        config = pve.vm_config(node, vmid) or {}
        disk = _disk_key(config)
        have = _size_gib(str(config.get(disk, "")))
        if have is not None and have >= spec.disk_gib:
            return
        pve.resize_disk(node, vmid, disk, spec.disk_gib)

    @staticmethod
    def _outs(spec: VmSpec) -> dict[str, Any]:
        outs = spec.model_dump(mode="json")
        outs["ipv4"] = str(spec.address.ip)
        return outs

    # --------------------------------------------------------------- update

    def update(self, _id: str, olds: dict[str, Any], news: dict[str, Any]) -> UpdateResult:
        old, spec = parse_spec(olds), parse_spec(news)
        pve = self._client(spec)
        node, vmid = spec.node, spec.vmid
        if pve.vm_config(node, vmid) is None:
            raise ProxmoxError(
                f"VM {vmid} on {node} is gone; run `pulumi refresh` so Pulumi recreates it on the next up"
            )
        before, after = old.pve_config(), spec.pve_config()
        changes = {k: v for k, v in after.items() if v is not None and before.get(k) != v}
        deletes = [k for k, v in after.items() if v is None and before.get(k) is not None]
        pve.wait_unlocked(node, vmid)
        if changes or deletes:
            params = dict(changes)
            if deletes:
                params["delete"] = ",".join(deletes)
            pve.set_vm_config(node, vmid, **params)
        if spec.disk_gib > old.disk_gib:
            self._grow_disk(pve, spec)
        status = pve.vm_status(node, vmid) or {}
        pending = pve.vm_pending(node, vmid)
        waiting = [p["key"] for p in pending if "pending" in p or p.get("delete")]
        cloudinit = any(
            k in changes for k in ("ipconfig0", "nameserver", "searchdomain", "sshkeys", "ciuser")
        )
        if status.get("status") == "running" and (waiting or cloudinit):
            # Hardware and cloud-init changes take effect on the next boot of the guest.
            log.info("VM %s: rebooting to apply %s", vmid, ", ".join(sorted(set(waiting) | set(changes))))
            pve.vm_power(node, vmid, "reboot")
        elif status.get("status") != "running":
            pve.vm_power(node, vmid, "start")
        self._wait_up(pve, spec)
        return UpdateResult(self._outs(spec))

    # --------------------------------------------------------------- delete

    def delete(self, id_: str, props: dict[str, Any]) -> None:
        spec = parse_spec(props)
        self._destroy(self._client(spec), spec.node, int(id_))

    @staticmethod
    def _destroy(pve: Pve, node: str, vmid: int) -> None:
        status = pve.vm_status(node, vmid)
        if status is None:
            return  # already gone
        pve.wait_unlocked(node, vmid)
        if status.get("status") == "running":
            pve.vm_power(node, vmid, "stop")
        if pve.vm_status(node, vmid) is None:
            return
        pve.destroy_vm(node, vmid, f"destroy VM {vmid}", **{"destroy-unreferenced-disks": 1})

    # ----------------------------------------------------------------- read

    def read(self, id_: str, props: dict[str, Any]) -> ReadResult:
        spec = parse_spec(props)
        pve = self._client(spec)
        config = pve.vm_config(spec.node, int(id_))
        if config is None:
            return ReadResult(None, {})  # gone: Pulumi drops it from the state
        outs = dict(props)
        outs["cores"] = int(config.get("cores", spec.cores))
        # PVE 8.1+ may write memory as a property string ("current=4096").
        outs["memory_mib"] = int(str(config.get("memory", spec.memory_mib)).split("=")[-1])
        outs["name"] = config.get("name", spec.name)
        return ReadResult(id_, outs)


def _size_gib(drive: str) -> float | None:
    for part in drive.split(","):
        key, _, value = part.partition("=")
        if key == "size" and value:
            units = {"K": 1 / 1024**2, "M": 1 / 1024, "G": 1, "T": 1024}
            unit = value[-1].upper()
            if unit in units:
                return float(value[:-1]) * units[unit]
            return float(value) / 1024**3
    return None
