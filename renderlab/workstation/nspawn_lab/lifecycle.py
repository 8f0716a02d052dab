"""Bring a local lab up and down. Everything it creates is recorded in its state dir, so `down` removes it
all (containers, their trees, the bridge, the NAT table) even after a crash halfway through `up`."""

from __future__ import annotations

import contextlib
import ipaddress
import itertools
import json
import os
import re
import shutil
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from renderlab.base import atomic
from renderlab.lab import ansible_unsafe, host_secrets
from renderlab.lab.config import load
from renderlab.lab.inventory import inventory
from renderlab.lab.pipeline_settings import recorded_images
from renderlab.workstation import k8s_artifacts
from renderlab.workstation.nspawn_lab import cluster_node as cluster_node_settings
from renderlab.workstation.nspawn_lab import host_limits, machines, network, rootfs, share_folder
from renderlab.workstation.nspawn_lab.machines import Machine
from renderlab.workstation.nspawn_lab.options import ROOT, LabError, LabOptions

TOOLS = {
    "debootstrap": "debootstrap",
    "systemd-nspawn": "systemd-container",
    "nft": "nftables",
    "ip": "iproute2",
    "ssh": "openssh-client",
    "ssh-keygen": "openssh-client",
}
SSH_BOOT_TIMEOUT_S = 180


def log(msg: str) -> None:
    print(f"[lab {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


@dataclass
class Lab:
    settings: LabOptions
    machines: list[Machine]

    @property
    def state(self) -> Path:
        return self.settings.state

    @property
    def inventory(self) -> Path:
        return self.state / "inventory.yml"

    @property
    def secrets(self) -> Path:
        return self.state / "secrets.yml"

    @property
    def stack_file(self) -> Path:
        return self.state / "stack.yaml"

    def ssh_base(self) -> list[str]:
        return ["ssh", *ssh_options(self.state)]


def ssh_options(state: Path) -> list[str]:
    return [
        "-i", str(state / "id_ed25519"),
        "-o", "IdentitiesOnly=yes",
        "-o", "BatchMode=yes",
        "-o", f"UserKnownHostsFile={state / 'known_hosts'}",
        "-o", "StrictHostKeyChecking=accept-new",
        "-o", "ConnectTimeout=5",
    ]  # fmt: skip


def preflight() -> None:
    if os.geteuid() != 0:
        raise LabError("the local lab needs root (bridges, NAT rules, containers); run it as root")
    missing = sorted({pkg for tool, pkg in TOOLS.items() if shutil.which(tool) is None})
    if missing:
        raise LabError(
            f"missing tools; install them with `apt-get install {' '.join(missing)}` (or `make apt`)"
        )


def resolvers() -> list[str]:
    override = os.environ.get("RENDERLAB_LAB_DNS")
    text = Path("/etc/resolv.conf").read_text() if Path("/etc/resolv.conf").exists() else ""
    found = override.split(",") if override else re.findall(r"^nameserver\s+(\d+\.\d+\.\d+\.\d+)", text, re.M)
    usable = [a for a in found if not ipaddress.IPv4Address(a).is_loopback]
    if not usable:
        raise LabError(
            "no non-loopback IPv4 resolver in /etc/resolv.conf for the lab hosts; "
            "set RENDERLAB_LAB_DNS=<resolver address> (e.g. your router)"
        )
    return usable


LOCAL_JOB_CPU = "1"


def write_stack(s: LabOptions, pubkey: str, dns: list[str]) -> dict[str, str]:
    """The local stack file: the base config with the lab's own network and key (validated like any)."""
    base = yaml.safe_load(s.base_config.read_text())
    cfg = base["config"]
    names = sorted(cfg["renderlab:hosts"])
    addresses = {n: str(s.subnet.network_address + 11 + i) for i, n in enumerate(names)}
    cfg["renderlab:network"] = {
        "cidr": str(s.subnet),
        "gateway": str(s.gateway),
        "dns": dns,
        "search_domain": "lab.local",
        "hosts": addresses,
        # Ansible runs here, reaching the hosts from the bridge's own address.
        "workstation": [str(s.gateway)],
    }
    cfg["renderlab:ssh"] = {**cfg.get("renderlab:ssh", {}), "public_keys": [pubkey.strip()]}
    # No PVE behind the local lab: a token of its own in Pulumi's encrypted shape stands in for the example's
    # placeholder (which only the example itself may hold).
    cfg["renderlab:proxmox_api_token"] = {"secure": "v1:local-lab-has-no-proxmox"}
    # The nodes are containers on this machine, not VMs of the stack's size: a Job asking for the example's 2
    # cores is never scheduled (2 allocatable, the control plane's own pods ask ~1). One core each fits a Job on
    # either node at once.
    cfg["renderlab:pipeline"] = {**cfg.get("renderlab:pipeline", {}), "cpu": LOCAL_JOB_CPU}
    atomic.write_yaml(s.state / "stack.yaml", base, mode=0o644)
    return addresses


# What only the local lab's inventory has beyond the one Pulumi outputs for the same stack file: its SSH key,
# the Kubernetes air-gap folder (the local lab always installs from it), the node-in-a-container settings.
LOCAL_ONLY_VARS = (
    "ansible_ssh_private_key_file",
    "ansible_ssh_common_args",
    "renderlab_k8s_artifacts_dir",
    "kube_control_plane_kubeconfig_dest",
    *cluster_node_settings.inventory_vars(),
    *share_folder.inventory_vars(),
)
LOCAL_ONLY_HOST_VARS = tuple(cluster_node_settings.host_vars("x"))


def k8s_artifacts_dir(config) -> Path:
    """Where `make k8s-artifacts` leaves this Kubernetes version's air-gap folder."""
    return k8s_artifacts.default_cache(config.kubernetes.version)


def lab_inventory(config, s: LabOptions) -> dict:
    """The same inventory Pulumi's program outputs for this stack, plus the lab's own SSH key and options and
    the lab-only Kubernetes node settings (cluster_node)."""
    extra = {
        "ansible_ssh_private_key_file": str(s.state / "id_ed25519"),
        "ansible_ssh_common_args": " ".join(ssh_options(s.state)[2:]),
        "renderlab_k8s_artifacts_dir": str(k8s_artifacts_dir(config)),
        # The admin kubeconfig beside the lab's key (not the checkout's kubeconfig, a real lab's).
        "kube_control_plane_kubeconfig_dest": str(s.state / "kubeconfig"),
        **cluster_node_settings.inventory_vars(),
        **share_folder.inventory_vars(),
    }
    host_vars = {
        name: cluster_node_settings.host_vars(f"{s.prefix}-{name}")
        for name, host in config.hosts.items()
        if cluster_node_settings.is_cluster_node(host.role)
    }
    images = recorded_images(config, s.base_config)  # what `make images` built for the base stack, if any
    return inventory(config, extra_host_vars=host_vars, extra_vars=extra, images=images)


# Set only by extra_inventory: the vendor software the local lab cannot have (p4d, whose package repository is
# not reachable from it) is reported by site.yml's last play instead of failing the host, so `make lab` goes on
# past the hosts stage here. Pulumi's inventory for a real lab never holds it (tests/lab/test_make_lab_inputs.py).
WITHOUT_VENDOR = "renderlab_lab_without_vendor"
# Kept out of extra_inventory: the production path's known_hosts checking and kubeconfig destination stay.
PRODUCTION_KEPT = ("ansible_ssh_common_args", "kube_control_plane_kubeconfig_dest")


def extra_inventory(config, s: LabOptions) -> dict:
    """What `make lab` against the local lab merges over the inventory Pulumi outputs (LAB_EXTRA_INVENTORY):
    the lab's SSH key, the Kubernetes air-gap folder, the node-in-a-container and share settings, and
    WITHOUT_VENDOR; only host and group vars, so the hosts and groups are Pulumi's."""
    local = lab_inventory(config, s)
    group_vars = {
        k: v for k, v in local["all"]["vars"].items() if k in LOCAL_ONLY_VARS and k not in PRODUCTION_KEPT
    }
    host_vars = {
        name: {k: v for k, v in hvars.items() if k in LOCAL_ONLY_HOST_VARS}
        for group in local["all"]["children"].values()
        for name, hvars in group["hosts"].items()
    }
    return {
        "all": {
            "vars": {**group_vars, WITHOUT_VENDOR: True},
            "hosts": {name: hv for name, hv in sorted(host_vars.items()) if hv},
        }
    }


def status(s: LabOptions) -> dict:
    path = s.state / "state.json"
    return json.loads(path.read_text()) if path.exists() else {}


def _save(s: LabOptions, ms: list[Machine]) -> None:
    data = {"bridge": s.bridge, "subnet": str(s.subnet), "machines": [m.as_state() for m in ms]}
    atomic.write_json(s.state / "state.json", data)


def boot_machine(lab: Lab, m: Machine) -> None:
    """Boot one prepared host (again, after a stop: its tree, keys and installed packages are kept, as a
    VM's disk is); recorded in the state so `down` stops it."""
    role = load(lab.stack_file).hosts[m.name].role
    machines.boot(
        m, lab.settings.bridge, lab.state / "logs", cluster_node=cluster_node_settings.is_cluster_node(role)
    )
    _save(lab.settings, lab.machines)
    log(f"booting {m.machine} at {m.address}")


def stop_machine(lab: Lab, m: Machine) -> None:
    """Stop one host as a VM is shut down (its tree stays for the next boot)."""
    if machines.is_ours(m):
        log(f"stopping {m.machine}")
        machines.stop(m)
    m.pid = None
    _save(lab.settings, lab.machines)


def up(s: LabOptions, *, boot: bool = True) -> Lab:
    """Prepare every host and, with boot (the default), boot them and wait for their SSH. Without boot the hosts
    stay prepared and down, for something else to boot them as it starts their VMs (boot_machine: the
    `make lab` lane's fake Proxmox)."""
    preflight()
    host_limits.ensure_inotify_instances(log)
    if status(s) or network.bridge_exists(s):
        raise LabError(
            f"a lab with prefix {s.prefix} or bridge {s.bridge} is already up; run `make lab-local-down`"
        )
    t0 = time.monotonic()
    tree = rootfs.ensure(s.cache, log)
    if s.state.exists():  # a crashed lab's size-limited share: unmounted before its folder is removed
        share_folder.release(s.state)
    shutil.rmtree(s.state, ignore_errors=True)
    (s.state / "machines").mkdir(parents=True)
    s.state.chmod(0o700)  # holds the lab key and secrets
    (s.state / "logs").mkdir()
    ms: list[Machine] = []
    _save(s, ms)  # from here on, `down` knows about everything we create
    try:
        subprocess.run(
            [
                "ssh-keygen",
                "-q",
                "-t",
                "ed25519",
                "-N",
                "",
                "-C",
                f"renderlab-{s.prefix}",
                "-f",
                str(s.state / "id_ed25519"),
            ],
            check=True,
        )
        pubkey = (s.state / "id_ed25519.pub").read_text()
        dns = resolvers()
        addresses = write_stack(s, pubkey, dns)
        config = load(s.state / "stack.yaml")
        host_secrets.write(s.state / "secrets.yml", host_secrets.generate())
        # Every string marked unsafe for Ansible's templating, as Pulumi's inventory output is (infra/vms.py).
        atomic.write_text(
            s.state / "inventory.yml", ansible_unsafe.dumps(lab_inventory(config, s)), mode=0o644
        )
        log(f"network: bridge {s.bridge} {s.gateway}/{s.subnet.prefixlen} with NAT")
        network.up(s)
        share_folder.host_folder(s.state).mkdir(mode=0o755)
        if s.share_size:
            share_folder.limit(s.state, s.share_size)
            log(f"share: {s.share_size >> 20} MiB filesystem at {share_folder.host_folder(s.state)}")
        for name, address in addresses.items():
            binds = share_folder.binds(s.state, config.hosts[name].role, config.share.path)
            m = Machine(
                name, f"{s.prefix}-{name}", address, s.state / "machines" / f"{s.prefix}-{name}", binds=binds
            )
            ms.append(m)
            _save(s, ms)
            machines.prepare(
                m,
                tree,
                prefixlen=s.subnet.prefixlen,
                gateway=str(s.gateway),
                dns=dns,
                admin=config.ssh.admin_user,
                pubkey=pubkey,
            )
            if cluster_node_settings.is_cluster_node(config.hosts[name].role):
                cluster_node_settings.prepare(m.directory, m.machine)
        lab = Lab(s, ms)
        if not boot:
            log(f"lab prepared in {time.monotonic() - t0:.0f} s: {len(ms)} hosts, not booted")
            return lab
        for m in ms:
            boot_machine(lab, m)
        for m in ms:
            machines.wait_ssh(m, lab.ssh_base(), config.ssh.admin_user, SSH_BOOT_TIMEOUT_S, s.state / "logs")
            log(f"{m.machine} answers SSH")
    except BaseException:
        log("bringing the lab up failed; tearing down what was created")
        _save(s, ms)  # the pids of machines booted since the last save
        down(s)
        raise
    log(f"lab up in {time.monotonic() - t0:.0f} s: {len(ms)} hosts; inventory {s.state / 'inventory.yml'}")
    return lab


def down(s: LabOptions) -> None:
    st = status(s)
    ms = [Machine(**{**m, "directory": Path(m["directory"])}) for m in st.get("machines", [])]
    recorded = {m.pid for m in ms if machines.is_ours(m)}
    strays = [m for m in machines.running_under(s.state / "machines") if m.pid not in recorded]
    for m in [*ms, *strays]:
        if machines.is_ours(m):
            log(f"stopping {m.machine}")
            machines.stop(m)
    for removed in network.down(s):
        log(f"removed {removed}")
    for m in ms:
        # No cgroup namespace: the pods' cgroups were made in this machine's hierarchies; empty now.
        try:
            for removed in cluster_node_settings.remove_cgroup_root(m.machine):
                log(f"removed {removed}")
        except OSError as e:
            log(f"could not remove the cgroups of {m.machine}: {e}; remove them with rmdir once empty")
    if s.state.exists() and share_folder.release(s.state):  # after the hosts that bound it are gone
        log(f"unmounted the share at {share_folder.host_folder(s.state)}")
    if s.state.exists():
        # Keep the logs (console, playbook runs) for a post-mortem; everything else goes.
        kept = s.cache / f"{s.prefix}-last-logs"
        if (s.state / "logs").exists():
            shutil.rmtree(kept, ignore_errors=True)
            (s.state / "logs").rename(kept)
        shutil.rmtree(s.state)
        log(f"removed {s.state}")


def attach(s: LabOptions) -> Lab:
    """The lab that is up for these options (`make lab-local`), to work on without owning it."""
    ms = [Machine(**{**m, "directory": Path(m["directory"])}) for m in status(s).get("machines", [])]
    if not ms or not all(machines.is_ours(m) for m in ms):
        raise LabError(
            f"no local lab with prefix {s.prefix} is up (or some of its hosts stopped); run `make lab-local` "
            "(same RENDERLAB_LAB_* env) or `make lab-local-down` to clear a broken one"
        )
    return Lab(s, ms)


@contextlib.contextmanager
def running_lab(s: LabOptions | None = None) -> Iterator[Lab]:
    """A lab that is torn down when the block exits, whatever happens inside it."""
    s = s or LabOptions.from_env()
    lab = up(s)
    try:
        yield lab
    finally:
        down(s)


RECAP = re.compile(r"^(\S+)\s+:\s+ok=(\d+)\s+changed=(\d+)\s+unreachable=(\d+)\s+failed=(\d+)", re.M)


TASK = re.compile(r"^(?:TASK|RUNNING HANDLER) \[(.+?)\]", re.M)
FATAL = re.compile(r"^fatal: \[([^\]]+)\]", re.M)
# The roles' own stop when a vendor download (the p4d package) cannot be reached and no air-gap
# artifacts were given: an expected, explained stop on this machine, not a defect.
VENDOR_STOP = "Fail where a vendor download was missing"


@dataclass
class PlaybookRun:
    rc: int
    seconds: float
    recap: dict[str, dict[str, int]]
    log: Path
    failures: dict[str, list[str]]  # host -> names of the tasks that failed on it
    messages: dict[str, list[str]] = field(default_factory=dict)  # host -> each failure's message, in order

    @property
    def changed(self) -> int:
        return sum(h["changed"] for h in self.recap.values())

    @property
    def vendor_blocked(self) -> list[str]:
        """Failed hosts whose failure is site.yml's report of a role's unreachable vendor download.

        A failed host runs no further tasks, so its failure is its last `fatal:`; earlier ones were rescued."""
        return sorted(
            h
            for h, r in self.recap.items()
            if r["failed"] and self.failures.get(h) and self.failures[h][-1].endswith(VENDOR_STOP)
        )

    @property
    def real_failures(self) -> dict[str, list[str]]:
        blocked = set(self.vendor_blocked)
        failed = {
            h: self.failures.get(h, ["(unreachable)"])
            for h, r in self.recap.items()
            if r["failed"] or r["unreachable"]
        }
        return {h: tasks for h, tasks in failed.items() if h not in blocked}

    def why(self, limit: int = 1500) -> str:
        """Each really failed host's last failed task and its message: the reason, where the log is out of
        reach (a CI machine's)."""
        lines = []
        for host, tasks in self.real_failures.items():
            said = self.messages.get(host) or [""]
            lines.append(f"{host}: {tasks[-1]}: {said[-1][:limit]}".rstrip(": "))
        return "\n".join(lines)


def _fatal_blocks(text: str) -> Iterator[tuple[str, str, str]]:
    """(host, task, the result's text) for each `fatal: [host]` a task did not ignore."""
    headers = list(TASK.finditer(text))
    for n, header in enumerate(headers):
        end = headers[n + 1].start() if n + 1 < len(headers) else len(text)
        block = text[header.end() : end]
        for fatal in FATAL.finditer(block):
            rest = block[fatal.end() :].split("\nfatal: ", 1)[0]
            if "...ignoring" not in rest:
                yield fatal.group(1), header.group(1), rest


def _message(result: str) -> str:
    """A failed result's `msg`: a JSON object on the fatal line, or an indented YAML mapping under it (the
    yaml result format ansible.cfg sets); the raw text where it is neither."""
    head, _, body = result.partition("\n")
    head = head.split("=> ", 1)[-1].strip()
    try:
        parsed = (
            json.loads(head)
            if head
            else yaml.safe_load(
                textwrap.dedent(
                    "\n".join(itertools.takewhile(lambda line: line.startswith(" "), body.splitlines()))
                )
            )
        )
    except (ValueError, yaml.YAMLError):
        parsed = None
    if isinstance(parsed, dict) and "msg" in parsed:
        return " ".join(str(parsed["msg"]).split())
    return " ".join((head or body).split())


def _failures(text: str) -> dict[str, list[str]]:
    """Pair each `fatal: [host]` with the task it happened in; errors a task ignores do not count."""
    failures: dict[str, list[str]] = {}
    for host, task, _ in _fatal_blocks(text):
        failures.setdefault(host, []).append(task)
    return failures


def _fatal_messages(text: str) -> dict[str, list[str]]:
    messages: dict[str, list[str]] = {}
    for host, _, result in _fatal_blocks(text):
        messages.setdefault(host, []).append(_message(result))
    return messages


def run_site(lab: Lab, log_name: str, extra_args: list[str] | None = None) -> PlaybookRun:
    """Run the real ansible/site.yml against the lab; its output goes to a log file."""
    playbook = ROOT / ".venv" / "bin" / "ansible-playbook"
    cmd = [str(playbook), "-i", str(lab.inventory), "-e", f"@{lab.secrets}", "site.yml", *(extra_args or [])]
    env = {**os.environ, "ANSIBLE_CONFIG": str(ROOT / "ansible" / "ansible.cfg"), "ANSIBLE_NOCOLOR": "1"}
    out = lab.state / "logs" / log_name
    t0 = time.monotonic()
    with open(out, "w") as f:
        rc = subprocess.run(
            cmd, check=False, cwd=ROOT / "ansible", env=env, stdout=f, stderr=subprocess.STDOUT
        ).returncode
    seconds = time.monotonic() - t0
    text = out.read_text()
    recap = {
        h: {"ok": int(ok), "changed": int(ch), "unreachable": int(un), "failed": int(fa)}
        for h, ok, ch, un, fa in RECAP.findall(text)
    }
    return PlaybookRun(rc, seconds, recap, out, _failures(text), _fatal_messages(text))
