"""`make lab` as a user runs it, against a fake Proxmox whose VMs are the local lab's hosts.

- The fake PVE (fakepve over HTTPS, its own CA) holds the API token; the template and VMs are what the Pulumi
  program makes there. `PveGuests` plays each VM's guest with the local lab's prepared nspawn host of the same
  name: PVE starts the VM -> the host boots (cloud-init's address and key are already in its tree); PVE stops
  it -> the host shuts down, its disk kept. The guest agent answers only once the host installed
  qemu-guest-agent (the common role), as on a stock cloud image: the strict mode, never kinder than PVE.
- A copy of the working tree (tracked and new files, .venv linked) is the checkout `make lab` runs in, so the
  stack file, the stage stamps, the generated inventory and the fetched kubeconfig never land in this one.
- HOME is a folder of its own: the passphrase file, the secrets, known_hosts and Pulumi's local state are
  made there by the stages themselves, on first use, as on a new workstation; the tool caches stay shared.
"""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import yaml
from fakepve.server import FakePve, settle

from renderlab.lab import ansible_unsafe
from renderlab.lab.config import load
from renderlab.workstation.nspawn_lab import lifecycle, machines
from renderlab.workstation.nspawn_lab.lifecycle import Lab
from tests.infra.conftest import TOKEN_ID, TOKEN_SECRET, _interfaces
from tests.infra.engine import ROOT, tools_bin

NODE = "pve"
STACK = "lab"
AGENT = "usr/sbin/qemu-ga"  # what the qemu-guest-agent package installs


class ServedPve:
    """One FakePve on 127.0.0.1, on its own event loop (as fakepve's pytest plugin serves it)."""

    def __init__(self, certfile: str, keyfile: str):
        # fakepve's own placeholder root login (its pytest plugin's default); nothing here uses it: the
        # program and the test speak to this fake with the API token only.
        self.pve = FakePve(user="root@pam", password="secret", host="127.0.0.1", port=0)
        self.pve.time_scale = 0
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="make-lab-pve", daemon=True)
        self.thread.start()
        self._call(self.pve.start(certfile, keyfile))

    def _call(self, coro):
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(30)

    def stop(self) -> None:
        try:
            self._call(settle())
            self._call(self.pve.stop())
        finally:
            self.loop.call_soon_threadsafe(self.loop.stop)
            self.thread.join(30)


class PveGuests:
    """The local lab's hosts as the guests of the fake PVE's VMs (matched by name and static address)."""

    def __init__(self, pve, lab: Lab):
        self.pve, self.lab = pve, lab
        self.by_name = {m.name: m for m in lab.machines}
        self.errors: list[str] = []
        self.boots: dict[str, int] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="make-lab-guests", daemon=True)
        self._thread.start()

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                self._step()
            except Exception as e:  # noqa: BLE001 - reported by the test, never a silent dead thread
                self._error(f"{type(e).__name__}: {e}")
            self._stop.wait(0.2)

    def _error(self, msg: str) -> None:
        if msg not in self.errors:
            self.errors.append(msg)
            print(f"make lab guests: {msg}", file=sys.stderr, flush=True)

    def _step(self) -> None:
        for vm in list(self.pve.vms):
            if vm.template or "ipconfig0" not in vm.config or vm.name not in self.by_name:
                continue
            m = self.by_name[vm.name]
            address = re.search(r"ip=([\d.]+)/", str(vm.config["ipconfig0"]))
            if address is None or address.group(1) != m.address:
                msg = f"VM {vm.vmid} ({vm.name}) has {vm.config['ipconfig0']}, the lab host is at {m.address}"
                self._error(msg)
                continue
            running, up = vm.status == "running", machines.is_ours(m)
            if running and not up:
                lifecycle.boot_machine(self.lab, m)
                self.boots[m.name] = self.boots.get(m.name, 0) + 1
            elif not running and up:
                lifecycle.stop_machine(self.lab, m)
            installed = (m.directory / AGENT).exists()
            vm.agent = {"interfaces": _interfaces(vm)} if running and up and installed else None

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(60)


def copy_checkout(dest: Path) -> Path:
    """The working tree as git sees it (tracked and new files, mtimes kept), .venv linked, a git repo of its
    own (the stages hash their folder inputs through git)."""
    names = subprocess.run(
        ["git", "ls-files", "-z", "-co", "--exclude-standard"], cwd=ROOT, capture_output=True, check=True
    ).stdout.decode()
    for name in filter(None, names.split("\0")):
        src = ROOT / name
        (dest / name).parent.mkdir(parents=True, exist_ok=True)
        if src.is_symlink():  # infra/.venv -> ../.venv: the dynamic providers' virtualenv
            (dest / name).symlink_to(os.readlink(src))
        elif src.is_file():
            shutil.copy2(src, dest / name)
    (dest / ".venv").symlink_to(ROOT / ".venv")
    subprocess.run(["git", "init", "-q"], cwd=dest, check=True)
    return dest


def user_env(home: Path) -> dict[str, str]:
    """A new workstation's user: its own HOME; the Pulumi CLI `make tools` built on PATH (docs/building.md);
    the tool caches shared (XDG_CACHE_HOME)."""
    real_cache = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PULUMI_", "PROXMOX_", "RENDERLAB_LAB_"))}
    env.pop("RENDERLAB_HOME", None)
    env.update(
        HOME=str(home),
        # Pulumi finds its home (and `~` in `pulumi login --local`) through the password database, not HOME.
        PULUMI_HOME=str(home / ".pulumi"),
        XDG_CACHE_HOME=real_cache,
        PATH=f"{tools_bin()}:{env.get('PATH', '/usr/bin:/bin')}",
        ANSIBLE_NOCOLOR="1",
        NO_COLOR="1",
    )
    return env


def stack_config(lab: Lab, pve_url: str, cafile: str) -> dict:
    """The local lab's stack file (its network, key, sizes) pointed at the fake PVE; the token is set as a
    Pulumi secret afterwards, as docs/building.md says."""
    doc = yaml.safe_load(lab.stack_file.read_text())
    cfg = doc["config"]
    cfg.pop("renderlab:proxmox_api_token")
    px = cfg["renderlab:proxmox"]
    px.update(endpoint=pve_url, ca_file=cafile, verify_tls=True, node=NODE, token_id=TOKEN_ID)
    px["template"]["image_sha512"] = "b" * 128  # no SHA512SUMS download from here
    return doc


def prepare_pve(pve) -> None:
    pve.apitokens[TOKEN_ID] = TOKEN_SECRET
    pve.add_node(NODE)
    pve.storages["local"]["content"] = "iso,vztmpl,backup,import"


def write_extra_inventory(lab: Lab, path: Path) -> Path:
    config = load(lab.stack_file)
    path.write_text(ansible_unsafe.dumps(lifecycle.extra_inventory(config, lab.settings)))
    return path


class Workstation:
    """The user's side: a checkout, a HOME, and the commands docs/building.md gives, in that order."""

    def __init__(self, checkout: Path, home: Path, logs: Path, extra_env: dict[str, str]):
        self.checkout, self.home, self.logs = checkout, home, logs
        self.env = {**user_env(home), **extra_env}
        self.runs = 0

    def sh(self, *cmd: str, stdin: str | None = None, timeout: float = 300) -> subprocess.CompletedProcess:
        return subprocess.run(
            list(cmd), cwd=self.checkout, env=self.env, input=stdin, capture_output=True, text=True,
            timeout=timeout, check=False,
        )  # fmt: skip

    def check(self, *cmd: str, stdin: str | None = None, timeout: float = 300) -> str:
        out = self.sh(*cmd, stdin=stdin, timeout=timeout)
        assert out.returncode == 0, (
            f"{' '.join(cmd)} exited {out.returncode}:\n{(out.stdout + out.stderr)[-4000:]}"
        )
        return out.stdout

    def make_lab(self, *args: str, timeout: float = 3600) -> tuple[int, str, Path]:
        """`make lab ARGS`: (exit status, its output, the log it is kept in)."""
        self.runs += 1
        log = self.logs / f"make-lab-{self.runs}.log"
        t0 = time.monotonic()
        with open(log, "w") as f:
            rc = subprocess.run(
                ["make", "--no-print-directory", "lab", *args], cwd=self.checkout, env=self.env,
                stdin=subprocess.DEVNULL, stdout=f, stderr=subprocess.STDOUT, timeout=timeout, check=False,
            ).returncode  # fmt: skip
        print(f"make lab {' '.join(args)}: exit {rc} in {time.monotonic() - t0:.0f} s (log {log})")
        return rc, log.read_text(), log
