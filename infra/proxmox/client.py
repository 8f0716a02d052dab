"""The one place that talks to the Proxmox VE API: connect, retry, wait.

Everything that can be slow or flaky on a real PVE lives here, so the providers read as plain steps:

* transient errors are retried with exponential backoff: HTTP 5xx other than 500 (proxy and "no route"
  answers), 500s whose message says "try again" (config lock "got timeout", "got no worker upid", lost
  quorum), and connection errors;
* tasks are waited on by UPID and their exit status checked ("OK", and "WARNINGS: n" accepted); a failed
  task raises TaskFailed with PVE's own message and the end of the task log;
* a VM's config lock (clone, create, backup, ...) is waited out before the next change;
* a started guest is waited for over SSH on its static address (infra/proxmox/guest.py says why not the
  guest agent);
* clones on one node are serialized (a lock per endpoint and node, across threads and processes).
"""

from __future__ import annotations

import fcntl
import hashlib
import logging
import os
import random
import re
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import requests
from proxmoxer import ProxmoxAPI
from proxmoxer.core import ResourceException

log = logging.getLogger("renderlab.proxmox")

# The environment variable that may hold the API token secret (the UUID part); the stack's Pulumi secret
# renderlab:proxmox_api_token is used otherwise.
TOKEN_ENV = "PROXMOX_API_TOKEN"

# 500s that PVE answers while something else holds a lock or a worker could not start: worth a retry.
_TRANSIENT_500 = re.compile(
    r"got timeout|got no worker upid|no quorum|temporarily unavailable|try again|"
    r"connection (reset|refused|timed out)|unable to fork worker",
    re.IGNORECASE,
)
_NOT_FOUND = re.compile(r"does not exist|no such VM", re.IGNORECASE)


class ProxmoxError(Exception):
    """A Proxmox call that failed for good; the message says which call and what PVE answered."""


class TaskFailed(ProxmoxError):
    """A PVE task that ended with an exit status other than OK / WARNINGS."""

    def __init__(self, message: str, exitstatus: str, upid: str):
        super().__init__(message)
        self.exitstatus = exitstatus
        self.upid = upid


class Timeout(ProxmoxError):
    """Waited longer than allowed for a task, a lock or a guest to boot."""


@dataclass(frozen=True)
class Connection:
    """How to reach PVE: no secret in here (it is safe to keep in Pulumi state)."""

    endpoint: str  # https://host:port
    token_id: str  # user@realm!tokenname
    verify_tls: bool = True
    ca_file: str | None = None

    @property
    def verify(self) -> bool | str:
        if not self.verify_tls:
            return False
        return self.ca_file or True


@dataclass(frozen=True)
class Timing:
    """Waits and backoff, in seconds. Tests shrink them; a real lab keeps the defaults."""

    attempts: int = 8  # tries of one call on transient errors
    backoff: float = 1.0  # first retry delay, doubled each time
    backoff_max: float = 20.0
    poll: float = 1.0  # between task / lock / SSH polls
    task_timeout: float = 900.0
    lock_timeout: float = 300.0
    boot_timeout: float = 600.0  # start -> the guest's sshd answers (first boot runs cloud-init)
    http_timeout: float = 30.0


def is_transient(err: Exception) -> bool:
    if isinstance(err, requests.exceptions.SSLError):
        return False  # a certificate problem does not fix itself; say so at once
    if isinstance(err, requests.ConnectionError | requests.Timeout):
        return True
    if isinstance(err, ResourceException):
        if err.status_code >= 500 and err.status_code != 500:
            return True
        return err.status_code == 500 and bool(_TRANSIENT_500.search(describe(err)))
    return False


def is_not_found(err: Exception) -> bool:
    return isinstance(err, ResourceException) and bool(_NOT_FOUND.search(describe(err)))


def describe(err: Exception) -> str:
    """PVE's message of a failed call, with its per-field errors."""
    if isinstance(err, ResourceException):
        text = f"HTTP {err.status_code}: {str(err.content).strip()}"
        if isinstance(err.errors, dict) and err.errors:
            fields = "; ".join(f"{k}: {str(v).strip()}" for k, v in sorted(err.errors.items()))
            text += f" ({fields})"
        return text
    return f"{type(err).__name__}: {err}"


def upid_node(upid: str) -> str:
    parts = upid.split(":")
    if len(parts) < 3 or parts[0] != "UPID":
        raise ProxmoxError(f"not a PVE task id: {upid!r}")
    return parts[1]


_node_locks: dict[str, threading.Lock] = {}
_node_locks_guard = threading.Lock()


class Pve:
    """A proxmoxer client with the retry and wait rules above. Build one per provider call."""

    def __init__(
        self,
        conn: Connection,
        token_secret: str,
        timing: Timing | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ):
        if not token_secret:
            raise ProxmoxError(
                f"no Proxmox API token secret: set it with `pulumi config set --secret "
                f"renderlab:proxmox_api_token <uuid>` or export {TOKEN_ENV}"
            )
        url = urlsplit(conn.endpoint)
        if url.scheme != "https" or not url.hostname:
            raise ProxmoxError(f"proxmox endpoint {conn.endpoint!r} is not https://host[:port]")
        user, _, token_name = conn.token_id.partition("!")
        if not user or not token_name:
            raise ProxmoxError(f"proxmox token_id {conn.token_id!r} is not user@realm!tokenname")
        self.conn = conn
        self.timing = timing or Timing()
        self._sleep = sleep
        self.api = ProxmoxAPI(
            url.hostname,
            port=url.port or 8006,
            user=user,
            token_name=token_name,
            token_value=token_secret,
            verify_ssl=conn.verify,
            timeout=self.timing.http_timeout,
            backend="https",
        )

    # ------------------------------------------------------------------ calls

    def call(self, method: str, path: str, **params: Any) -> Any:
        """One API call, retried on transient errors with exponential backoff (and jitter)."""
        resource = self.api(path.strip("/"))
        delay = self.timing.backoff
        for attempt in range(1, self.timing.attempts + 1):
            try:
                return getattr(resource, method.lower())(**params)
            except (ResourceException, requests.RequestException) as err:
                if not is_transient(err) or attempt == self.timing.attempts:
                    if isinstance(err, ResourceException):
                        raise
                    raise ProxmoxError(f"{method} {path}: {describe(err)}") from err
                log.warning("%s %s: %s; retry %d in %.1fs", method, path, describe(err), attempt, delay)
                self._sleep(delay * random.uniform(0.8, 1.2))
                delay = min(delay * 2, self.timing.backoff_max)
        raise AssertionError("unreachable")

    def get(self, path: str, **params: Any) -> Any:
        return self.call("GET", path, **params)

    def task(self, method: str, path: str, what: str, **params: Any) -> str:
        """Start a task and wait for it; retries the whole task when it failed on a transient lock error."""
        delay = self.timing.backoff
        for attempt in range(1, self.timing.attempts + 1):
            upid = self.call(method, path, **params)
            try:
                return self.wait_task(upid, what)
            except TaskFailed as err:
                if not _TRANSIENT_500.search(err.exitstatus) or attempt == self.timing.attempts:
                    raise
                log.warning("%s: %s; retry %d in %.1fs", what, err.exitstatus, attempt, delay)
                self._sleep(delay)
                delay = min(delay * 2, self.timing.backoff_max)
        raise AssertionError("unreachable")

    def wait_task(self, upid: str, what: str, timeout: float | None = None) -> str:
        """Wait until the task stops; return its exit status or raise TaskFailed / Timeout."""
        if not isinstance(upid, str) or not upid.startswith("UPID:"):
            raise ProxmoxError(f"{what}: PVE returned no task id (got {upid!r})")
        node = upid_node(upid)
        deadline = time.monotonic() + (timeout or self.timing.task_timeout)
        while True:
            status = self.get(f"nodes/{node}/tasks/{upid}/status")
            if status.get("status") == "stopped":
                exitstatus = str(status.get("exitstatus", ""))
                if exitstatus == "OK" or exitstatus.startswith("WARNINGS"):
                    return exitstatus
                tail = self._log_tail(node, upid)
                raise TaskFailed(f"{what} failed: {exitstatus}{tail}", exitstatus, upid)
            if time.monotonic() > deadline:
                raise Timeout(
                    f"{what}: task {upid} still running after {timeout or self.timing.task_timeout}s"
                )
            self._sleep(self.timing.poll)

    def _log_tail(self, node: str, upid: str, lines: int = 5) -> str:
        try:
            entries = self.get(f"nodes/{node}/tasks/{upid}/log", start=0, limit=500)
        except (ResourceException, ProxmoxError):
            return ""
        text = [str(e.get("t", "")) for e in entries or [] if e.get("t")]
        return ("\n  task log: " + " | ".join(text[-lines:])) if text else ""

    # ------------------------------------------------------------------- VMs
    # Every REST path the providers use is spelled here, nowhere else.

    def _vm(self, node: str, vmid: int) -> str:
        return f"nodes/{node}/qemu/{vmid}"

    def create_vm(self, node: str, vmid: int, what: str, **config: Any) -> str:
        return self.task("POST", f"nodes/{node}/qemu", what, vmid=vmid, **config)

    def clone_vm(self, node: str, template: int, vmid: int, name: str, storage: str) -> str:
        return self.task(
            "POST",
            f"{self._vm(node, template)}/clone",
            f"clone template {template} to VM {vmid}",
            newid=vmid,
            name=name,
            full=1,
            storage=storage,
        )

    def set_vm_config(self, node: str, vmid: int, **params: Any) -> Any:
        return self.call("PUT", f"{self._vm(node, vmid)}/config", **params)

    def vm_pending(self, node: str, vmid: int) -> list[dict]:
        return self.get(f"{self._vm(node, vmid)}/pending") or []

    def resize_disk(self, node: str, vmid: int, disk: str, size_gib: int) -> str:
        what = f"resize {disk} of VM {vmid} to {size_gib}G"
        return self.task("PUT", f"{self._vm(node, vmid)}/resize", what, disk=disk, size=f"{size_gib}G")

    def vm_power(self, node: str, vmid: int, action: str) -> str:
        """action: start, stop or reboot."""
        return self.task("POST", f"{self._vm(node, vmid)}/status/{action}", f"{action} VM {vmid}")

    def make_template(self, node: str, vmid: int) -> str:
        return self.task("POST", f"{self._vm(node, vmid)}/template", f"convert VM {vmid} to a template")

    def destroy_vm(self, node: str, vmid: int, what: str, **params: Any) -> str:
        return self.task("DELETE", self._vm(node, vmid), what, purge=1, **params)

    def storage_content(self, node: str, storage: str, content: str) -> list[dict]:
        return self.get(f"nodes/{node}/storage/{storage}/content", content=content) or []

    def download_url(self, node: str, storage: str, what: str, **params: Any) -> str:
        return self.task("POST", f"nodes/{node}/storage/{storage}/download-url", what, **params)

    def vm_config(self, node: str, vmid: int) -> dict | None:
        """The VM's config, or None when it does not exist."""
        try:
            return self.get(f"{self._vm(node, vmid)}/config")
        except ResourceException as err:
            if is_not_found(err):
                return None
            raise

    def vm_status(self, node: str, vmid: int) -> dict | None:
        try:
            return self.get(f"{self._vm(node, vmid)}/status/current")
        except ResourceException as err:
            if is_not_found(err):
                return None
            raise

    def wait_unlocked(self, node: str, vmid: int, timeout: float | None = None) -> None:
        """Wait until no config lock (clone, create, backup, ...) is held on the VM."""
        deadline = time.monotonic() + (timeout or self.timing.lock_timeout)
        while True:
            config = self.vm_config(node, vmid)
            if config is None or not config.get("lock"):
                return
            if time.monotonic() > deadline:
                raise Timeout(
                    f"VM {vmid} on {node} is still locked ({config['lock']}) after "
                    f"{timeout or self.timing.lock_timeout}s; if no task runs, clear it with `qm unlock {vmid}`"
                )
            self._sleep(self.timing.poll)

    @contextmanager
    def clone_slot(self, node: str) -> Iterator[None]:
        """Hold the node's clone slot: one clone per node at a time, across threads and processes."""
        key = hashlib.sha256(f"{self.conn.endpoint}|{node}".encode()).hexdigest()[:16]
        with _node_locks_guard:
            lock = _node_locks.setdefault(key, threading.Lock())
        path = os.path.join(tempfile.gettempdir(), f"renderlab-pve-clone-{key}.lock")
        with lock, open(path, "a") as fh:
            fcntl.flock(fh, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(fh, fcntl.LOCK_UN)
