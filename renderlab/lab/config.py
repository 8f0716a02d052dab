"""The lab config: one Pulumi stack file, validated by one pydantic model.

Every layer reads the lab through `load()` (Pulumi, the Ansible inventory, and through the inventory the DAG's
settings, renderlab/lab/pipeline_settings.py) so that no value is typed twice.  The stack file is Pulumi's own format (``Pulumi.<stack>.yaml``): a ``config:`` mapping whose
keys are ``renderlab:<section>``.  Secrets are never plain values: a secret key must hold Pulumi's encrypted
form (``{secure: ...}``, written by ``pulumi config set --secret``).

``python -m renderlab.lab.config check FILE`` validates a file and prints every problem at once.
"""

from __future__ import annotations

import difflib
import ipaddress
import re
from dataclasses import dataclass
from pathlib import Path
from types import UnionType
from typing import Annotated, Any, Literal, Union, get_args, get_origin

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    TypeAdapter,
    ValidationError,
    field_validator,
    model_validator,
)

from renderlab.base.errors import CommandError
from renderlab.lab.oncalendar import OnCalendar
from renderlab.lab.patterns import (
    PATTERNS,
    DataFolder,
    DepotFolder,
    ImageUrl,
    LinuxUser,
    Name,
    PveBridge,
    PveEndpoint,
    PveStorage,
    PveTokenId,
    Sha512,
    SshPublicKey,
)
from renderlab.pipeline.settings import Backend, Notify, Preset
from renderlab.pipeline.settings import Settings as _PipelineSettings

NAMESPACE = "renderlab"
ROLES = ("control_plane", "worker", "storage", "perforce", "airflow")
# The names a k3s-era stack file used, and what each became (check_config says so in one line).
K3S_RENAMES = {
    "versions.k3s": "a `renderlab:kubernetes:` section (see Pulumi.example.yaml)",
    "role k3s_server": "role control_plane",
    "role k3s_agent": "role worker",
}

# Keys that hold secrets: they must be Pulumi-encrypted ({secure: ...}) in the stack file.
SECRET_KEYS = {
    "proxmox_api_token": "required: the Proxmox API token secret (the UUID part of the token)",
    "notify_webhook_url": "optional: webhook URL for run notifications (often carries a token)",
    "kubeconfig": "optional: the cluster's admin kubeconfig (after Ansible); with it `pulumi up` lays the cluster layer",
    "backup_s3_access_key_id": "needed when backup.target.kind is s3: the S3 access key id",
    "backup_s3_secret_access_key": "needed when backup.target.kind is s3: the S3 secret access key",
}
REQUIRED_SECRETS = ("proxmox_api_token",)
# Pulumi.example.yaml's placeholders: they let the example validate as it is, and are refused in any other
# stack file (a copied example that still holds them would reach PVE with a fake token and lock the admin
# out of the VMs with a key nobody has). tests/test_config.py keeps them equal to the example's.
EXAMPLE_FILE = "Pulumi.example.yaml"
EXAMPLE_TOKEN = "v1:EXAMPLE-ONLY-replace-with-pulumi-config-set-secret"
EXAMPLE_KEY = "AAAAC3NzaC1lZDI1NTE5AAAAIExampleKeyReplaceWithYourOwnPublicKey0000"
# A plain value under a key named like this is almost certainly a leaked secret.
_SECRETISH = re.compile(r"(password|passwd|secret|token|api_key|apikey|private_key)$", re.IGNORECASE)
_FLOATING = {"latest", "stable", "current", "edge", "main", "master", "nightly", "*", "x"}

JOB_MEMORY = r"^[1-9]\d*(Mi|Gi)$"


class ConfigError(CommandError):
    """All problems found in one stack file, each as 'key.path: message' (several: one a line)."""

    keep_lines = True

    def __init__(self, source: str, problems: list[str]):
        self.source = source
        self.problems = problems
        if len(problems) == 1:  # one problem, one line
            super().__init__(f"{source}: {problems[0]}")
            return
        lines = "\n".join(f"  - {p}" for p in problems)
        super().__init__(f"{source}: {len(problems)} problem(s) in the lab config:\n{lines}")


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, str_strip_whitespace=True)


def _pinned(value: str, pattern: str, example: str) -> str:
    if value.lower() in _FLOATING or not re.fullmatch(pattern, value):
        raise ValueError(f"'{value}' is not a pinned version; pin an exact release such as {example}")
    return value


def _strict_network(v: Any) -> Any:
    try:
        ipaddress.IPv4Network(str(v), strict=True)
    except ValueError as e:
        raise ValueError(f"'{v}' is not a network address with prefix (e.g. 10.20.0.0/24): {e}") from e
    return v


class Template(_Model):
    """The cloud-init template VM the hosts are cloned from."""

    vmid: int = Field(ge=100, le=999_999_999)
    name: Name = "debian-12-cloudinit"
    # adopt: use an existing template with this VMID instead of building one from the image.
    adopt: bool = False
    image_url: ImageUrl | None = None
    # Without it, the digest is read from the SHA512SUMS file published beside the image.
    image_sha512: Sha512 | None = None

    @model_validator(mode="after")
    def _source(self) -> Template:
        if not self.adopt and self.image_url is None:
            raise ValueError("image_url is required unless adopt: true (use an existing template VMID)")
        return self


class Proxmox(_Model):
    endpoint: PveEndpoint
    node: Name
    token_id: PveTokenId
    verify_tls: bool = True
    ca_file: str | None = None
    storage: PveStorage
    image_storage: PveStorage
    bridge: PveBridge
    template: Template


class Network(_Model):
    cidr: ipaddress.IPv4Network
    gateway: ipaddress.IPv4Address
    dns: list[ipaddress.IPv4Address] = Field(min_length=1)
    search_domain: Annotated[str, StringConstraints(pattern=r"^[a-z0-9]([a-z0-9.-]*[a-z0-9])?$")]
    # One static address per host, keyed by the host's name in `hosts`.
    hosts: dict[Name, ipaddress.IPv4Address]
    # The workstation: where Ansible, `make render` and kubectl run from (addresses or networks). The hosts'
    # firewalls let SSH, Airflow's API, the Kubernetes API, the registry and the share in from here only.
    # Unset: the gateway (a workstation behind it is seen as it when the gateway NATs, as the local lab's does).
    workstation: list[ipaddress.IPv4Network] | None = Field(default=None, min_length=1)

    @field_validator("workstation", mode="before")
    @classmethod
    def _workstation_networks(cls, v: Any) -> Any:
        if not isinstance(v, list):
            return v
        nets = []
        for item in v:
            try:
                nets.append(ipaddress.IPv4Network(str(item), strict=True))
            except ValueError as e:
                raise ValueError(
                    f"'{item}' is not an IPv4 address or network (e.g. 10.20.0.50 or 192.168.1.0/24): {e}"
                ) from e
        return nets

    @property
    def workstation_networks(self) -> list[ipaddress.IPv4Network]:
        return list(self.workstation or [ipaddress.IPv4Network(f"{self.gateway}/32")])

    @field_validator("cidr", mode="before")
    @classmethod
    def _strict_cidr(cls, v: Any) -> Any:
        return _strict_network(v)


class Host(_Model):
    role: Literal["control_plane", "worker", "storage", "perforce", "airflow"]
    vmid: int = Field(ge=100, le=999_999_999)
    cores: int = Field(ge=1, le=128)
    memory_mib: int = Field(ge=1024, le=1_048_576)
    disk_gib: int = Field(ge=8, le=65_536)


# Floors per role, below which the service does not run (kubeadm wants 2 CPUs; Blender renders need headroom).
MIN_SIZE = {
    "control_plane": (2, 4096, 20),
    "worker": (2, 4096, 20),
    "storage": (1, 1024, 20),
    "perforce": (1, 2048, 20),
    "airflow": (2, 4096, 20),
}


class Versions(_Model):
    debian: str = Field(description="Debian release of the cloud image, e.g. 12")
    airflow: str
    blender: str
    p4d: str
    # The cluster layer (infra/cluster.py): the SMB CSI driver's Helm chart and the lab registry's image.
    csi_driver_smb: str = "v1.17.0"
    # registry 3 (CNCF Distribution): `make k8s-artifacts` builds its image for an air-gapped lab from this pin.
    registry: str = "3.1.1"

    @field_validator("debian")
    @classmethod
    def _debian(cls, v: str) -> str:
        return _pinned(v, r"1[2-9]", "12")

    @field_validator("airflow", "blender")
    @classmethod
    def _semver(cls, v: str) -> str:
        return _pinned(v, r"\d+\.\d+\.\d+", "3.1.0")

    @field_validator("csi_driver_smb")
    @classmethod
    def _chart(cls, v: str) -> str:
        return _pinned(v, r"v?\d+\.\d+\.\d+", "v1.17.0")

    @field_validator("registry")
    @classmethod
    def _registry(cls, v: str) -> str:
        v = _pinned(v, r"\d+\.\d+\.\d+", "3.1.1")
        if not v.startswith("3."):
            # 2.x cannot be built from its Go module (a dependency of it is no longer served), and its image
            # reads its config from another path than the one the lab's air-gap image keeps.
            raise ValueError(f"registry {v} is not a 3.x release; pin registry 3, such as 3.1.1")
        return v

    @field_validator("p4d")
    @classmethod
    def _p4d(cls, v: str) -> str:
        return _pinned(v, r"20\d\d\.[12](/\d+)?", "2025.1")


class Kubernetes(_Model):
    """Upstream Kubernetes, installed with kubeadm; every component pinned, and built here by
    `make k8s-artifacts` at exactly these versions (renderlab/workstation/k8s_artifacts.py).

    The set is the least risky one that builds from its Go modules here: Kubernetes 1.35 is the newest minor
    whose kubeadm still names these etcd/CoreDNS/pause tags and whose kubelet still runs on a cgroup v1 host
    (with failCgroupV1: false); containerd 2.2 and runc 1.3 are the lines it was released against (Debian 12's
    containerd 1.6 is below its minimum); etcd, CoreDNS and pause are the tags kubeadm 1.35 names (a mismatch
    is refused by `make k8s-artifacts`, which compares with `kubeadm config images list`); CNI plugins 1.9.1 is
    the current line; cri-tools 1.34.0 is the newest release served here that is not newer than the cluster
    (crictl speaks CRI v1 to any containerd 2); kube-router 2.1.0 is the only kube-router whose Go module
    builds here (flannel, Calico, Cilium, Antrea and kindnet do not)."""

    version: str = Field(description="Kubernetes release (kubeadm, kubelet, kubectl, the control plane)")
    containerd: str
    runc: str
    etcd: str
    coredns: str
    pause: str
    cni_plugins: str
    cri_tools: str
    kube_router: str
    # The pod network (each node gets a /24 of it, kube-router routes between them) and the Services' range.
    pod_cidr: ipaddress.IPv4Network = ipaddress.IPv4Network("10.244.0.0/16")
    service_cidr: ipaddress.IPv4Network = ipaddress.IPv4Network("10.96.0.0/12")

    @field_validator(
        "version", "containerd", "runc", "etcd", "coredns", "cni_plugins", "cri_tools", "kube_router"
    )
    @classmethod
    def _semver(cls, v: str) -> str:
        return _pinned(v, r"\d+\.\d+\.\d+", "1.35.8 (no leading v)")

    @field_validator("pause")
    @classmethod
    def _pause(cls, v: str) -> str:
        return _pinned(v, r"\d+\.\d+(\.\d+)?", "3.10.1")

    @field_validator("pod_cidr", "service_cidr", mode="before")
    @classmethod
    def _strict(cls, v: Any) -> Any:
        return _strict_network(v)

    @model_validator(mode="after")
    def _ranges(self) -> Kubernetes:
        if self.pod_cidr.prefixlen > 22:
            raise ValueError(
                f"pod_cidr {self.pod_cidr} is too small: each node takes a /24 of it; use /22 or larger (e.g. /16)"
            )
        if not 12 <= self.service_cidr.prefixlen <= 24:
            raise ValueError(
                f"service_cidr {self.service_cidr}: the API server takes /12 to /24 for Services (e.g. 10.96.0.0/12)"
            )
        if self.pod_cidr.overlaps(self.service_cidr):
            raise ValueError(
                f"pod_cidr {self.pod_cidr} overlaps service_cidr {self.service_cidr}; give them separate ranges"
            )
        return self


class Share(_Model):
    name: Annotated[str, StringConstraints(pattern=r"^[a-z][a-z0-9_-]{0,30}$")] = "render"
    path: DataFolder = "/srv/render"
    user: LinuxUser = "render"
    uid: int = Field(default=2000, ge=1000, le=60000)


class Perforce(_Model):
    port: int = Field(default=1666, ge=1, le=65535)
    ssl: bool = True
    depot: Annotated[str, StringConstraints(pattern=r"^[A-Za-z][A-Za-z0-9_-]*$")] = "depot"
    projects_path: DepotFolder
    service_user: Annotated[str, StringConstraints(pattern=r"^[a-z][a-z0-9_-]*$")] = "renderlab"
    data_root: DataFolder = "/opt/perforce/servers/renderlab"
    # The p4d SSL certificate's fingerprint (`p4d -Gf` on the Perforce VM once p4d runs); the cluster
    # layer hands it to the fetch Job, which refuses an ssl: port it cannot verify. Not a secret.
    trust_fingerprint: (
        Annotated[str, StringConstraints(pattern=r"^[0-9A-F]{2}(:[0-9A-F]{2}){19,31}$")] | None
    ) = None


class Registry(_Model):
    # The in-cluster image registry the nodes pull the fetch and Blender images from.
    node_port: int = Field(default=30500, ge=30000, le=32767)
    size_gib: int = Field(default=20, ge=1)


def _pipeline_default(name: str) -> Any:
    """The pipeline settings model owns these knobs' defaults and limits; the lab config only repeats none."""
    return _PipelineSettings.model_fields[name].default


class Pipeline(_Model):
    namespace: Annotated[str, StringConstraints(pattern=r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")] = "render"
    backend: Backend = _pipeline_default("backend")
    preset: Preset = _pipeline_default("preset")
    fps: Annotated[int, *_PipelineSettings.model_fields["fps"].metadata] = _pipeline_default("fps")
    samples: Annotated[int, *_PipelineSettings.model_fields["samples"].metadata] = _pipeline_default(
        "samples"
    )
    frames_per_chunk: Annotated[int, *_PipelineSettings.model_fields["frames_per_chunk"].metadata] = (
        _pipeline_default("frames_per_chunk")
    )
    notify: Notify = _pipeline_default("notify")
    registry: Registry = Registry()
    # Each render (and scene build) Job's CPU and memory, as Kubernetes quantities (requests = limits).
    cpu: Annotated[str, *_PipelineSettings.model_fields["cpu"].metadata] = _pipeline_default("cpu")
    memory: Annotated[str, StringConstraints(pattern=JOB_MEMORY)] = _pipeline_default("memory")

    def memory_mib(self) -> int:
        number = int(self.memory[:-2])
        return number * 1024 if self.memory.endswith("Gi") else number

    def cpu_cores(self) -> float:
        return float(self.cpu[:-1]) / 1000 if self.cpu.endswith("m") else float(self.cpu)


class Docs(_Model):
    # The documentation site and render gallery (images/docs), served on every Kubernetes node at this port.
    node_port: int = Field(default=30080, ge=30000, le=32767)


class BackupToLabHost(_Model):
    """A folder on another lab host, reached over SFTP (restic's sftp backend) with a key only the backup uses."""

    kind: Literal["lab_host"]
    host: Name = Field(description="a host in `hosts` that holds none of the data it stores")
    path: DataFolder


class BackupToSftp(_Model):
    """An SFTP server outside the lab (a NAS, another site); each backed-up host's key must be authorized there."""

    kind: Literal["sftp"]
    host: Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9]([A-Za-z0-9.-]{0,252}[A-Za-z0-9])?$")]
    port: int = Field(default=22, ge=1, le=65535)
    user: LinuxUser
    path: DataFolder
    # The server's host key (`ssh-keyscan -t ed25519 HOST`, checked by hand): no trust on first use.
    host_key: SshPublicKey


class BackupToS3(_Model):
    """An S3 endpoint (MinIO, Garage, a provider); the access key pair is a Pulumi secret (backup_s3_*)."""

    kind: Literal["s3"]
    endpoint: Annotated[str, StringConstraints(pattern=r"^https://[^/\s]+/?$")]
    bucket: Annotated[str, StringConstraints(pattern=r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")]
    prefix: Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9][A-Za-z0-9_./-]{0,200}$")] = "renderlab"
    region: Annotated[str, StringConstraints(pattern=r"^[a-z0-9-]{1,32}$")] | None = None


BackupTarget = Annotated[BackupToLabHost | BackupToSftp | BackupToS3, Field(discriminator="kind")]


class BackupRetention(_Model):
    """What `restic forget --prune` keeps after each backup (per data set)."""

    keep_daily: int = Field(default=7, ge=0, le=3660)
    keep_weekly: int = Field(default=5, ge=0, le=520)
    keep_monthly: int = Field(default=12, ge=0, le=1200)

    @model_validator(mode="after")
    def _keeps_something(self) -> BackupRetention:
        if self.keep_daily + self.keep_weekly + self.keep_monthly == 0:
            raise ValueError("keeps no snapshot at all; set keep_daily, keep_weekly or keep_monthly above 0")
        return self


class BackupData(_Model):
    """Which data the backup holds. Each is on one host: airflow_db on the airflow host, perforce on the
    perforce host, share_* on the storage host."""

    airflow_db: bool = True  # run history, connections, variables (a pg_dump, never the live files)
    perforce: bool = True  # checkpoint + rotated journal + versioned files, taken together
    share_runs: bool = True  # renders that took hours
    share_gallery: bool = True  # the published gallery
    # Off by default: the assets are a synced copy of the depot and are re-fetched from it (the perforce data).
    share_assets: bool = False


class Backup(_Model):
    target: BackupTarget
    schedule: OnCalendar = "*-*-* 02:30:00"
    check_schedule: OnCalendar = "Sun *-*-* 05:00:00"
    # How long after a scheduled run a missing snapshot counts as late (a slow upload, a host that was off).
    late_after_hours: int = Field(default=6, ge=1, le=168)
    retention: BackupRetention = BackupRetention()
    data: BackupData = BackupData()


class Ssh(_Model):
    admin_user: LinuxUser = "renderlab"
    public_keys: list[SshPublicKey] = Field(min_length=1)


class SecureValue(_Model):
    """Pulumi's encrypted form of a secret config value."""

    secure: Annotated[str, StringConstraints(min_length=8)]


class LabConfig(_Model):
    """The whole lab. Field names are the stack file's keys without the `renderlab:` prefix."""

    proxmox: Proxmox
    network: Network
    hosts: dict[Name, Host]
    versions: Versions
    kubernetes: Kubernetes
    share: Share = Share()
    perforce: Perforce
    pipeline: Pipeline = Pipeline()
    docs: Docs = Docs()
    ssh: Ssh
    backup: Backup | None = None
    # Secrets: names only (their values stay encrypted in the stack file).
    proxmox_api_token: SecureValue | None = None
    notify_webhook_url: SecureValue | None = None
    kubeconfig: SecureValue | None = None
    backup_s3_access_key_id: SecureValue | None = None
    backup_s3_secret_access_key: SecureValue | None = None

    @model_validator(mode="after")
    def _cross_checks(self) -> LabConfig:
        problems = lab_problems(dict(self))
        if problems:
            raise ValueError("\n".join(problems))
        return self

    # Derived views: the other layers read these instead of re-deriving them.
    def hosts_by_role(self, role: str) -> dict[str, Host]:
        return {n: h for n, h in self.hosts.items() if h.role == role}

    def address(self, name: str) -> str:
        return str(self.network.hosts[name])

    @property
    def prefix_len(self) -> int:
        return self.network.cidr.prefixlen


def lab_problems(s: dict[str, Any]) -> list[str]:
    """Checks across sections. `s` maps section name -> validated section; sections that failed their own
    validation are absent, and the checks that need them are skipped (their errors are reported already)."""
    problems: list[str] = []
    net: Network | None = s.get("network")
    hosts: dict[str, Host] | None = s.get("hosts")
    proxmox: Proxmox | None = s.get("proxmox")
    if net is not None:
        if net.gateway not in net.cidr:
            problems.append(
                f"network.gateway {net.gateway} is outside {net.cidr}; use an address inside the CIDR"
            )
        elif net.gateway in (net.cidr.network_address, net.cidr.broadcast_address):
            problems.append(
                f"network.gateway {net.gateway} is the network or broadcast address of {net.cidr}; use the "
                "router's own address"
            )
        seen: dict[ipaddress.IPv4Address, str] = {}
        for name, addr in net.hosts.items():
            where = f"network.hosts.{name}"
            if addr not in net.cidr:
                problems.append(f"{where} {addr} is outside {net.cidr}; pick an address inside the CIDR")
            elif addr in (net.cidr.network_address, net.cidr.broadcast_address):
                problems.append(f"{where} {addr} is the network or broadcast address of {net.cidr}")
            if addr == net.gateway:
                problems.append(f"{where} {addr} is the gateway's address; give the host its own")
            if addr in seen:
                problems.append(f"{where} {addr} is already used by {seen[addr]}; addresses must be unique")
            seen.setdefault(addr, name)
        for net_ in net.workstation or []:
            inside = sorted(n for n, a in net.hosts.items() if a in net_)
            if net_.prefixlen == 0 or inside:
                problems.append(
                    f"network.workstation {net_} covers the lab host(s) {', '.join(inside) or 'everywhere'}: the "
                    "workstation is let into every service; name only the machine(s) Ansible runs from"
                )
    if net is not None and hosts is not None:
        for name in sorted(set(hosts) - set(net.hosts)):
            problems.append(f"network.hosts.{name}: host '{name}' has no address; add one inside {net.cidr}")
        for name in sorted(set(net.hosts) - set(hosts)):
            problems.append(
                f"network.hosts.{name}: no host named '{name}' in hosts; remove it or add the host"
            )
    if hosts is not None:
        vmids: dict[int, str] = {proxmox.template.vmid: "proxmox.template"} if proxmox else {}
        for name, host in hosts.items():
            if host.vmid in vmids:
                problems.append(
                    f"hosts.{name}.vmid {host.vmid} is already used by {vmids[host.vmid]}; VMIDs must be unique"
                )
            vmids.setdefault(host.vmid, f"hosts.{name}")
            for field, have, need, unit in zip(
                ("cores", "memory_mib", "disk_gib"),
                (host.cores, host.memory_mib, host.disk_gib),
                MIN_SIZE[host.role],
                ("", " MiB", " GiB"),
                strict=True,
            ):
                if have < need:
                    problems.append(
                        f"hosts.{name}.{field} {have}{unit} is too small for role {host.role}; use >= {need}{unit}"
                    )
        roles = [h.role for h in hosts.values()]
        for role in ROLES:
            count = roles.count(role)
            if count == 0:
                problems.append(f"hosts: no host has role {role}; the lab needs one")
            elif count > 1 and role != "worker":
                problems.append(f"hosts: {count} hosts have role {role}; exactly one is supported")
    kube: Kubernetes | None = s.get("kubernetes")
    if net is not None and kube is not None:
        for key in ("pod_cidr", "service_cidr"):
            if getattr(kube, key).overlaps(net.cidr):
                problems.append(
                    f"kubernetes.{key} {getattr(kube, key)} overlaps the lab network {net.cidr}; "
                    "pick a range the hosts do not use"
                )
    p4: Perforce | None = s.get("perforce")
    if p4 is not None and not (p4.projects_path + "/").startswith(f"//{p4.depot}/"):
        problems.append(
            f"perforce.projects_path {p4.projects_path} is not inside the depot //{p4.depot}; start it with //{p4.depot}/"
        )
    for key in REQUIRED_SECRETS:
        if s.get(key) is None:
            problems.append(
                f"{key}: required secret is missing; run `pulumi config set --secret {NAMESPACE}:{key}` "
                f"({SECRET_KEYS[key]})"
            )
    pipeline: Pipeline | None = s.get("pipeline")
    if pipeline is not None and hosts is not None:
        nodes = [(n, h) for n, h in hosts.items() if h.role in ("control_plane", "worker")]
        if nodes:
            # The render namespace's LimitRange caps a container at the biggest node (infra/manifests.py).
            name, big = max(nodes, key=lambda nh: (nh[1].cores, nh[1].memory_mib))
            if pipeline.cpu_cores() > big.cores:
                problems.append(
                    f"pipeline.cpu {pipeline.cpu} is more than the biggest Kubernetes node has ({name}: {big.cores} "
                    "cores); a render Job could never be scheduled: lower it or give the node more cores"
                )
            elif pipeline.cpu_cores() == big.cores:
                # Every node's own pods (kube-proxy, kube-router, CoreDNS, the control plane) ask for some CPU.
                problems.append(
                    f"pipeline.cpu {pipeline.cpu} is all the cores of the biggest Kubernetes node ({name}: "
                    f"{big.cores}); the node's own pods ask for part of them, so a render Job would wait "
                    "unscheduled forever: ask for less or give the node more cores"
                )
            if pipeline.memory_mib() > big.memory_mib:
                problems.append(
                    f"pipeline.memory {pipeline.memory} is more than the biggest Kubernetes node has ({name}: "
                    f"{big.memory_mib} MiB); a render Job could never be scheduled: lower it or give the node "
                    "more memory"
                )
    docs: Docs | None = s.get("docs")
    if pipeline is not None and docs is not None and docs.node_port == pipeline.registry.node_port:
        problems.append(
            f"docs.node_port {docs.node_port} is already the registry's (pipeline.registry.node_port); "
            "give the docs site its own NodePort"
        )
    if pipeline is not None and pipeline.notify != "none" and s.get("notify_webhook_url") is None:
        problems.append(
            f"pipeline.notify is {pipeline.notify} but notify_webhook_url is not set; run "
            f"`pulumi config set --secret {NAMESPACE}:notify_webhook_url URL` or set notify: none"
        )
    problems += _backup_problems(s.get("backup"), hosts, s)
    return problems


# Which host role holds each kind of backed-up data.
BACKUP_DATA_ROLE = {
    "airflow_db": "airflow",
    "perforce": "perforce",
    "share_runs": "storage",
    "share_gallery": "storage",
    "share_assets": "storage",
}


def _backup_problems(backup: Backup | None, hosts: dict[str, Host] | None, s: dict[str, Any]) -> list[str]:
    if backup is None:
        return []
    problems: list[str] = []
    target = backup.target
    if isinstance(target, BackupToLabHost) and hosts is not None:
        if target.host not in hosts:
            problems.append(
                f"backup.target.host: no host named '{target.host}' in hosts; name the lab host that keeps the backups"
            )
        else:
            role = hosts[target.host].role
            held = [d for d, on in backup.data if on and BACKUP_DATA_ROLE[d] == role]
            if held:
                problems.append(
                    f"backup.target.host: {target.host} holds {', '.join(held)} itself; a backup on the same VM "
                    "dies with it. Pick another host (e.g. a Kubernetes worker), an sftp or an s3 target"
                )
    if isinstance(target, BackupToS3):
        for key in ("backup_s3_access_key_id", "backup_s3_secret_access_key"):
            if s.get(key) is None:
                problems.append(
                    f"{key}: backup.target.kind is s3 but the key is not set; run "
                    f"`pulumi config set --secret {NAMESPACE}:{key}`"
                )
    if not any(on for _, on in backup.data):
        problems.append("backup.data: every kind of data is off; turn one on or remove the backup section")
    return problems


# Sizing the share (the storage VM's disk): what one song's frames take at the configured preset. An estimate,
# not a measure: Blender's PNG frames (8-bit RGBA, compression 15) of a noisy Cycles render keep about 3 bytes
# per pixel; a song of 3 minutes; the OS takes ~4 GiB of the disk.
SONG_SECONDS = 180
PNG_BYTES_PER_PIXEL = 3
OS_GIB = 4


def song_frames_gib(preset: str, fps: int, seconds: int = SONG_SECONDS) -> float:
    """The share space one song's frames take at `preset` (estimate; see above)."""
    from renderlab.base.presets import PRESETS

    p = PRESETS[preset]
    frames = 1 if p.still else (p.fps or fps) * seconds
    return frames * p.width * p.height * PNG_BYTES_PER_PIXEL / 1024**3


def lab_warnings(config: LabConfig) -> list[str]:
    """What validates but will hurt: said by `make check-config`, never an error."""
    warnings = []
    storage = next(iter(config.hosts_by_role("storage").items()), None)
    if storage is not None:
        name, host = storage
        need = song_frames_gib(config.pipeline.preset, config.pipeline.fps)
        room = host.disk_gib - OS_GIB
        if need > room:
            warnings.append(
                f"hosts.{name}.disk_gib {host.disk_gib} GiB leaves ~{room} GiB for the share, but one "
                f"{SONG_SECONDS // 60}-minute song's frames at preset {config.pipeline.preset} take "
                f"~{need:.0f} GiB (estimate); raise disk_gib to at least {need + OS_GIB:.0f} or pick a "
                "smaller preset"
            )
    return warnings


def _plain_secretish(data: Any, path: str = "") -> list[tuple[str, Any]]:
    found = []
    if isinstance(data, dict):
        for k, v in data.items():
            sub = f"{path}.{k}" if path else str(k)
            if k in SECRET_KEYS or k == "secure":
                continue
            if isinstance(v, str) and v and _SECRETISH.search(str(k)):
                found.append((sub, v))
            else:
                found.extend(_plain_secretish(v, sub))
    elif isinstance(data, list):
        for i, v in enumerate(data):
            found.extend(_plain_secretish(v, f"{path}[{i}]"))
    return found


class _UniqueKeyLoader(yaml.SafeLoader):
    """SafeLoader that refuses duplicate keys (plain YAML silently keeps the last one), and flow nesting
    ('[' / '{') deeper than `max_depth` as the scanner meets it: PyYAML's scanner looks ahead over every
    open bracket before it yields a token, so 'depth' checked later would come after quadratic work."""

    max_depth = 64

    def fetch_flow_collection_start(self, TokenClass):  # noqa: N803 - PyYAML's signature
        if self.flow_level >= self.max_depth:
            raise ValueError(
                f"the document is nested deeper than {self.max_depth} levels (line {self.line + 1}); "
                f"raise the bound with --max-yaml-depth {self.max_depth}"
            )
        super().fetch_flow_collection_start(TokenClass)


def _construct_mapping(loader: _UniqueKeyLoader, node: yaml.MappingNode, deep: bool = False) -> dict:
    mapping: dict = {}
    for key_node, value_node in node.value:
        if isinstance(key_node, yaml.SequenceNode | yaml.MappingNode):
            kind = "sequence" if isinstance(key_node, yaml.SequenceNode) else "mapping"
            raise yaml.constructor.ConstructorError(
                None,
                None,
                f"a {kind} used as a mapping key (line {key_node.start_mark.line + 1}); keys are plain names",
                key_node.start_mark,
            )
        if key_node.tag == "tag:yaml.org,2002:merge":
            raise yaml.constructor.ConstructorError(
                None,
                None,
                f"a YAML merge key ('<<', line {key_node.start_mark.line + 1}) is not supported in a stack "
                "file; write the keys out in full",
                key_node.start_mark,
            )
        key = loader.construct_object(key_node, deep=deep)
        # The model strips the blanks around every name: 'storage' and 'storage ' would be one key, the
        # last silently winning. So keys are compared as the model will see them.
        same = {k.strip() if isinstance(k, str) else k: k for k in mapping}
        bare = key.strip() if isinstance(key, str) else key
        if bare in same:
            also = "" if same[bare] == key else " (keys that differ only by blanks around them are one key)"
            raise yaml.constructor.ConstructorError(
                None,
                None,
                f"duplicate key '{bare}' (line {key_node.start_mark.line + 1}){also}",
                key_node.start_mark,
            )
        mapping[key] = loader.construct_object(value_node, deep=deep)
    return mapping


_UniqueKeyLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)


def _known_keys(loc: tuple[Any, ...]) -> list[str]:
    """The keys the model accepts at `loc` (the path of a mapping in the stack file), for "did you mean"."""
    annotation: Any = LabConfig
    for part in loc:
        annotation = _unwrap(annotation)
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            field = annotation.model_fields.get(str(part))
            if field is None:
                return []
            annotation = field.annotation
        elif get_origin(annotation) is dict:
            annotation = get_args(annotation)[1]  # a name -> model mapping (hosts): any key, then its model
        else:
            return []
    annotation = _unwrap(annotation)
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return list(annotation.model_fields)
    return []


def _unwrap(annotation: Any) -> Any:
    """Optional[X] / Annotated[X, ...] -> X."""
    while True:
        if get_origin(annotation) is Annotated:
            annotation = get_args(annotation)[0]
            continue
        args = [a for a in get_args(annotation) if a is not type(None)]
        if get_origin(annotation) in (Union, UnionType) and len(args) == 1:
            annotation = args[0]
            continue
        return annotation


_MORE_HINTS = {
    "ImageUrl": "an https:// URL of a .qcow2, .img or .raw cloud image",
    "Sha512": "128 lowercase hex digits (the image's line in SHA512SUMS)",
}
# What a value matching each shared pattern looks like, said the way a user can act on it.
_PATTERN_HINTS = {
    PATTERNS["PveEndpoint"]: "the PVE API's base URL, https://host:8006, without a path (no /api2/json)",
    PATTERNS["PveTokenId"]: (
        "the token's full id user@realm!tokenname, e.g. renderlab@pve!pulumi (as `pveum user token list "
        "renderlab@pve` names it: the user, '!', the token's name)"
    ),
    PATTERNS["Name"]: (
        "a short DNS label: lowercase letters, digits and '-', starting with a letter (for proxmox.node: "
        "the node's name as `pvecm nodes` or the PVE web UI shows it)"
    ),
    PATTERNS["PveStorage"]: "a PVE storage id as `pvesm status` lists it, e.g. local-lvm",
    PATTERNS["PveBridge"]: "a Linux bridge name as `ip link` shows it on the node, e.g. vmbr0",
    **{PATTERNS[k]: v for k, v in _MORE_HINTS.items() if k in PATTERNS},
    JOB_MEMORY: "a Kubernetes memory quantity in Mi or Gi, e.g. 4Gi or 3584Mi",
}


def _pattern_problem(loc: str, value: Any, pattern: str) -> str | None:
    hint = _PATTERN_HINTS.get(pattern)
    if hint is None:
        return None
    text = str(value)
    if pattern == PATTERNS["PveEndpoint"] and re.search(r"/api2(/json)?/?$", text):
        fixed = re.sub(r"/api2(/json)?/?$", "", text)
        return f"{loc}: '{text}' ends in the API path; write {fixed} (the client adds /api2/json itself)"
    if pattern == PATTERNS["PveTokenId"] and "!" not in text:
        return f"{loc}: '{text}' has no token name after '!'; it must be {hint}"
    return f"{loc}: '{text}' is not {hint}"


def _format_errors(err: ValidationError, skip: set[str]) -> list[str]:
    errors = [e for e in err.errors(include_url=False) if ".".join(str(p) for p in e["loc"]) not in skip]
    # A misspelt key is one mistake: "unknown key" and "required key missing" become one "did you mean".
    missing = {e["loc"]: e for e in errors if e["type"] == "missing"}
    replaced: set[tuple[Any, ...]] = set()
    problems = []
    for e in errors:
        loc = ".".join(str(p) for p in e["loc"])
        if e["type"] == "extra_forbidden":
            parent, key = e["loc"][:-1], str(e["loc"][-1])
            absent = [str(m[-1]) for m in missing if m[:-1] == parent and m not in replaced]
            guess = difflib.get_close_matches(key, absent, n=1, cutoff=0.6)
            if guess:
                replaced.add((*parent, guess[0]))
            else:
                guess = difflib.get_close_matches(key, _known_keys(parent), n=1, cutoff=0.6)
            mean = f"did you mean {guess[0]}?" if guess else "check its spelling against Pulumi.example.yaml"
            problems.append(f"{loc}: unknown key; {mean}")
        elif e["type"] == "missing":
            continue  # after the loop: only those no typo accounts for
        elif e["type"] == "string_pattern_mismatch" and _pattern_problem(
            loc, e["input"], e["ctx"]["pattern"]
        ):
            problems.append(str(_pattern_problem(loc, e["input"], e["ctx"]["pattern"])))
        else:
            for line in e["msg"].removeprefix("Value error, ").split("\n"):
                # Whole-lab checks (empty loc) already name their own key paths.
                problems.append(_clip(f"{loc}: {line}" if loc else line))
    for where in missing:
        if where not in replaced:
            problems.append(
                f"{'.'.join(str(p) for p in where)}: required key is missing; see Pulumi.example.yaml"
            )
    return problems


_LONG_QUOTED = re.compile(r"'([^'\n]{40})[^'\n]{40,}'")


def _clip(text: str, limit: int = 400) -> str:
    """A problem line with long values shortened: a 1 MB value is not echoed back whole."""
    text = _LONG_QUOTED.sub(lambda m: f"'{m.group(1)}...' ({len(m.group(0)) - 2} characters)", text)
    return text if len(text) <= limit else text[:limit] + f"... ({len(text)} characters)"


def _placeholders(section: dict[str, Any]) -> list[str]:
    """The example's placeholders left in a stack file that is not the example."""
    found = []
    token = section.get("proxmox_api_token")
    if isinstance(token, dict) and token.get("secure") == EXAMPLE_TOKEN:
        found.append(
            "proxmox_api_token: still the example's placeholder; run `pulumi config set --secret "
            f"{NAMESPACE}:proxmox_api_token <token-uuid>` (the UUID `pveum user token add` printed)"
        )
    ssh = section.get("ssh")
    keys = ssh.get("public_keys") if isinstance(ssh, dict) else None
    for i, key in enumerate(keys if isinstance(keys, list) else []):
        if isinstance(key, str) and EXAMPLE_KEY in key.split():
            found.append(
                f"ssh.public_keys[{i}]: the example's placeholder key (nobody holds its private half); "
                "put your own public key there, e.g. the line in ~/.ssh/id_ed25519.pub"
            )
    return found


def parse(stack: dict[str, Any], source: str = "<stack>", example: bool = False) -> LabConfig:
    """Validate a loaded stack file (the whole YAML document); raise ConfigError listing every problem.
    `example`: the file is Pulumi.example.yaml, the only one whose placeholders are accepted."""
    if not isinstance(stack, dict) or not isinstance(stack.get("config"), dict):
        raise ConfigError(source, ["the file has no 'config:' mapping; copy Pulumi.example.yaml to start"])
    problems: list[str] = []
    for key in sorted(set(stack) - {"config", "secretsprovider", "encryptionsalt", "encryptedkey"}):
        problems.append(
            f"{key}: unknown top-level key; a stack file holds config (and Pulumi's secret settings)"
        )
    section: dict[str, Any] = {}
    for key, value in stack["config"].items():
        ns, _, name = str(key).partition(":")
        if ns != NAMESPACE or not name:
            problems.append(
                f"{key}: not a '{NAMESPACE}:' key; every lab setting lives under {NAMESPACE}:<section>"
            )
            continue
        section[name] = value
    if k3s := _k3s_names(section):
        # The rest would only be errors that follow from these names; one line says what to rename.
        renames = "; ".join(f"{old} -> {K3S_RENAMES[old]}" for old in k3s)
        raise ConfigError(
            source,
            [
                f"this stack file is for k3s, which the lab no longer runs (it runs upstream Kubernetes with "
                f"kubeadm); rename {renames}"
            ],
        )
    if not example:
        problems.extend(_placeholders(section))
    flagged: set[str] = set()
    for key, hint in SECRET_KEYS.items():
        value = section.get(key)
        if value is not None and not (isinstance(value, dict) and "secure" in value):
            problems.append(
                f"{key}: holds a plain value; secrets are never plain in the stack file. Remove it and run "
                f"`pulumi config set --secret {NAMESPACE}:{key}` ({hint})"
            )
            # Keep validating the rest as if the secret were set properly.
            section[key] = {"secure": "<plain value rejected>"}
    for path, _ in _plain_secretish(section):
        flagged.add(path)
        problems.append(
            f"{path}: looks like a secret stored as plain text; move it to a Pulumi secret "
            "(`pulumi config set --secret ...`) or remove it"
        )
    try:
        config = LabConfig.model_validate(section)
    except ValidationError as e:
        config = None
        field_errors = [err for err in e.errors() if err["loc"]]
        problems.extend(_format_errors(e, flagged))
        if field_errors:
            # Whole-lab checks did not run; run them over the sections that are valid on their own.
            broken = {err["loc"][0] for err in field_errors}
            problems.extend(lab_problems(_valid_sections(section, broken)))
    if problems:
        raise ConfigError(source, problems)
    assert config is not None
    return config


def _k3s_names(section: dict[str, Any]) -> list[str]:
    """The k3s-era names a stack file still uses, as keys of K3S_RENAMES."""
    found = []
    versions, hosts = section.get("versions"), section.get("hosts")
    if isinstance(versions, dict) and "k3s" in versions:
        found.append("versions.k3s")
    roles = (
        {h.get("role") for h in hosts.values() if isinstance(h, dict)} if isinstance(hosts, dict) else set()
    )
    found += [f"role {r}" for r in ("k3s_server", "k3s_agent") if r in roles]
    return found


def _valid_sections(section: dict[str, Any], broken: set[Any]) -> dict[str, Any]:
    valid: dict[str, Any] = {}
    for name, field in LabConfig.model_fields.items():
        if name in broken:
            continue
        value = section[name] if name in section else field.get_default(call_default_factory=True)
        if value is not None:
            valid[name] = TypeAdapter(field.annotation).validate_python(value)
    return valid


@dataclass(frozen=True)
class Limits:
    """Bounds on the YAML itself, checked before any of it is built: a stack file is a few KiB, but aliases
    can make a few hundred bytes expand exponentially (an "alias bomb"). check_config's --max-yaml-* flags
    raise them."""

    max_bytes: int = 1 << 20
    max_nodes: int = 100_000  # scalars, sequences and mappings after every alias is expanded
    max_depth: int = 64  # nesting, also after expansion


def yaml_problem(e: yaml.YAMLError) -> str:
    """The parser's message without its snippet of the file: the offending line may hold a secret."""
    mark = getattr(e, "problem_mark", None)
    problem = getattr(e, "problem", None) or type(e).__name__
    where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
    context, cmark = getattr(e, "context", None), getattr(e, "context_mark", None)
    ctx = f" ({context} at line {cmark.line + 1})" if context and cmark is not None else ""
    if isinstance(e, yaml.constructor.ConstructorError):  # well-formed YAML this loader does not accept
        return f"YAML not accepted{where}: {problem}{ctx} (the line is not shown: it may hold a secret)"
    return f"not valid YAML{where}: {problem}{ctx}; fix the syntax there (the line is not shown: it may hold a secret)"


def _children(node: yaml.Node) -> list[yaml.Node]:
    if isinstance(node, yaml.MappingNode):
        return [n for pair in node.value for n in pair]
    if isinstance(node, yaml.SequenceNode):
        return list(node.value)
    return []


def _check_expansion(root: yaml.Node, limits: Limits) -> None:
    """Refuse recursive aliases, and documents whose expanded size or depth passes the bounds.

    Iterative, and each node is sized once (aliases share nodes), so the check itself is linear in the file."""
    size: dict[int, int] = {}
    depth: dict[int, int] = {}
    on_path: set[int] = {id(root)}
    stack = [(root, iter(_children(root)))]
    while stack:
        node, kids = stack[-1]
        for kid in kids:
            if id(kid) in on_path:
                raise ValueError(
                    f"recursive alias at line {kid.start_mark.line + 1}: the node refers to itself; "
                    "a stack file needs no aliases (write the values out)"
                )
            if id(kid) not in size:
                on_path.add(id(kid))
                stack.append((kid, iter(_children(kid))))
                break
        else:
            stack.pop()
            on_path.discard(id(node))
            own = _children(node)
            size[id(node)] = 1 + sum(size[id(k)] for k in own)
            depth[id(node)] = 1 + max((depth[id(k)] for k in own), default=0)
            if size[id(node)] > limits.max_nodes:
                raise ValueError(
                    f"the document expands to more than {limits.max_nodes} YAML nodes (aliases at line "
                    f"{node.start_mark.line + 1} multiply it); remove the aliases, or raise the bound with "
                    f"--max-yaml-nodes {limits.max_nodes}"
                )
            if depth[id(node)] > limits.max_depth:
                raise ValueError(
                    f"the document is nested deeper than {limits.max_depth} levels (at line "
                    f"{node.start_mark.line + 1}, through aliases); raise the bound with --max-yaml-depth "
                    f"{limits.max_depth}"
                )


def _parse_yaml(text: str, limits: Limits) -> Any:
    # Depth first, over the event stream (the parser is iterative; the composer would recurse).
    level = 0
    events = _UniqueKeyLoader(text)
    events.max_depth = limits.max_depth
    try:
        while events.check_event():
            event = events.get_event()
            if isinstance(event, yaml.CollectionStartEvent):
                level += 1
                if level > limits.max_depth:
                    raise ValueError(
                        f"the document is nested deeper than {limits.max_depth} levels (line "
                        f"{event.start_mark.line + 1}); raise the bound with --max-yaml-depth {limits.max_depth}"
                    )
            elif isinstance(event, yaml.CollectionEndEvent):
                level -= 1
    finally:
        events.dispose()
    loader = _UniqueKeyLoader(text)
    loader.max_depth = limits.max_depth
    try:
        node = loader.get_single_node()
        if node is None:
            return None
        _check_expansion(node, limits)
        return loader.construct_document(node)
    finally:
        loader.dispose()


def parse_bounded_yaml(text: str, limits: Limits | None = None) -> Any:
    """YAML from a file that may be hostile (the secrets file, the stack file): duplicate keys, alias bombs,
    nesting and size past `limits` refused. Raises ValueError (bounds) or yaml.YAMLError (syntax)."""
    return _parse_yaml(text, limits or Limits())


def load(path: str | Path, limits: Limits | None = None) -> LabConfig:
    """Read and validate a stack file; raise ConfigError with every problem and its key path."""
    path = Path(path)
    limits = limits or Limits()
    try:
        raw = path.read_bytes()
    except OSError as e:
        raise ConfigError(
            str(path), [f"cannot read the file: {e.strerror}; pass CONFIG=path/to/stack.yaml"]
        ) from e
    if len(raw) > limits.max_bytes:
        raise ConfigError(
            str(path),
            [
                f"the file is {len(raw)} bytes, over the bound of {limits.max_bytes} for a stack file; "
                f"is it the right file? (raise the bound with --max-yaml-bytes {limits.max_bytes})"
            ],
        )
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise ConfigError(
            str(path),
            [f"not UTF-8 text (byte 0x{raw[e.start]:02x} at offset {e.start}); save the file as UTF-8"],
        ) from None
    try:
        data = _parse_yaml(text, limits)
    except yaml.YAMLError as e:
        raise ConfigError(str(path), [yaml_problem(e)]) from None
    except ValueError as e:
        raise ConfigError(str(path), [str(e)]) from None
    return parse(data, str(path), example=path.name == EXAMPLE_FILE)
