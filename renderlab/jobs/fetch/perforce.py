"""`p4://` sources: sync a depot path at an exact changelist into a persistent client workspace.

One client workspace per project and share root (`renderlab-<project>-<hash of root>`), rooted at the
project's asset folder on the share, no host lock. The server's have-list makes an unchanged re-run
transfer nothing; `p4 sync` removes files deleted in the depot. After the sync every file is checked
against the depot's MD5 (`fstat -Ol`); only damaged ones are force-synced.

p4python is driven with exception_level RAISE_ERROR: errors raise P4Exception, warnings (such as
"file(s) up-to-date.") are read from `p4.warnings`.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from .credentials import Credentials
from .errors import AuthError, DestinationError, FetchError, SourceError, UnreachableError, VerificationError
from .progress import Reporter, p4_progress
from .result import FetchResult
from .source import P4Source
from .workspace import Workspace

ALGORITHM = "md5"
DEFAULT_DEADLINE_S = 600.0  # all retries of one fetch together; --retry-deadline overrides it
RAISE_ERROR = 1
CLIENT_OPTIONS = "noallwrite clobber nocompress unlocked nomodtime rmdir"
TRANSFERRED = {"added", "updated", "refreshed", "replaced"}
DELETED_HEAD = {"delete", "move/delete", "purge", "archive"}

_AUTH = (
    "password (p4passwd) invalid or unset",
    "password invalid",
    "your session has expired",
    "access for user",
    "you don't have permission",
    "authenticity of",
    "identification has changed",
    "fingerprint",
)
_COMM = (
    "connect to server failed",
    "tcp connect to",
    "tcp receive failed",
    "tcp send failed",
    "partner exited unexpectedly",
    "connection reset",
    "connection refused",
)
_DISK = ("no space left on device", "disk quota exceeded")
_PERM = ("permission denied", "read-only file system")


def client_name(root: Path) -> str:
    return f"renderlab-{root.name}-{hashlib.sha256(str(root).encode()).hexdigest()[:8]}"


def _message(exc: Exception) -> str:
    errors = getattr(exc, "errors", None) or []
    value = getattr(exc, "value", None)
    lines = [ln.strip() for m in errors for ln in str(m).splitlines() if ln.strip()]
    if isinstance(value, str) and value.startswith("[P4.connect()]"):
        # connect() failures keep the detail ("connect: host:1666: Connection refused") only in .value.
        detail = [ln.strip() for ln in value.splitlines()[1:] if ln.strip()]
        lines += [d for d in detail if d not in lines]
    return " / ".join(lines) or str(exc)


def classify(exc: Exception, doing: str) -> FetchError:
    """Map a P4Exception to the fetch failure it means (auth, unreachable, disk, or source)."""
    msg = _message(exc)
    low = msg.lower()
    if any(s in low for s in _AUTH):
        return AuthError(
            f"Perforce refused the credentials while {doing}: {msg} (not retried; fix the user, password/ticket or fingerprint)"
        )
    if any(s in low for s in _COMM):
        return UnreachableError(f"Perforce server unreachable while {doing}: {msg}")
    if any(s in low for s in _DISK):
        return DestinationError(f"the share is full while {doing}: {msg}; free space on it, then re-run")
    if any(s in low for s in _PERM):
        return DestinationError(
            f"cannot write the workspace while {doing}: {msg}; fix the share's permissions"
        )
    if (
        "error in client specification" in low
        or "must refer to client" in low
        or "no such file" in low
        or "not in client view" in low
    ):
        return SourceError(f"{msg} -- check the depot path and changelist in --source")
    return FetchError(f"Perforce error while {doing}: {msg}")


class _Session:
    """One connected p4 object plus the steps of a fetch; every P4Exception is classified."""

    def __init__(self, p4: Any, src: P4Source, ws: Workspace, reporter: Reporter, exc_type: type):
        self.p4, self.src, self.ws, self.reporter, self.exc_type = p4, src, ws, reporter, exc_type

    def run(self, doing: str, cmd: str, *args: str) -> list:
        try:
            return self.p4.run(cmd, *args)
        except self.exc_type as e:
            raise classify(e, doing) from None

    def warnings(self) -> list[str]:
        return [str(w) for w in (self.p4.warnings or [])]

    def trust(self, creds: Credentials) -> None:
        if not self.src.ssl:
            return
        if not creds.fingerprint:
            raise AuthError(
                f"{self.src.port} is an SSL port: set P4TRUST_FINGERPRINT (or a `fingerprint` file in the "
                "secret folder) to the server's fingerprint so it can be trusted without a prompt"
            )
        self.run("installing the SSL fingerprint", "trust", "-i", creds.fingerprint)

    def login(self, creds: Credentials) -> None:
        self.p4.password = creds.secret
        if creds.is_ticket:
            return  # a ticket authenticates as P4PASSWD directly
        try:
            self.p4.run_login()
        except self.exc_type as e:
            err = classify(e, f"logging in as {creds.user}")
            if isinstance(err, UnreachableError):
                raise err from None
            raise AuthError(f"Perforce login as {creds.user} failed: {_message(e)} (not retried)") from None

    def ensure_client(self) -> bool:
        """Create or update the workspace spec; returns True when it had to be saved."""
        name = self.p4.client
        spec = self.run("reading the client workspace", "client", "-o", name)[0]
        wanted = {
            "Root": str(self.ws.root),
            "Options": CLIENT_OPTIONS,
            "LineEnd": "local",
            "View": [f"{self.src.depot_path} //{name}/..."],
        }
        current = {k: spec.get(k) for k in wanted}
        if current == wanted and not spec.get("Host"):
            return False
        spec.update(wanted)
        spec["Host"] = ""
        spec["Description"] = "renderlab fetch workspace (managed; edits are overwritten)\n"
        self.p4.input = spec
        self.run("saving the client workspace", "client", "-i")
        return True

    def resolve_change(self) -> int:
        path = self.src.depot_path
        if self.src.change is not None:
            at = f"{path}@{self.src.change}"
            rows = self.run(f"checking {at}", "changes", "-m1", "-s", "submitted", at)
            if not rows:
                raise SourceError(f"no submitted changelist at or before {self.src.change} touches {path}")
            return self.src.change
        rows = self.run(f"resolving the latest change of {path}", "changes", "-m1", "-s", "submitted", path)
        if not rows:
            raise SourceError(f"no submitted changelist touches {path}; check the depot path in --source")
        return int(rows[0]["change"])

    def depot_files(self, change: int) -> list[dict]:
        at = f"{self.src.depot_path}@{change}"
        rows = self.run(f"listing {at}", "fstat", "-Ol", at)
        live = [r for r in rows if isinstance(r, dict) and r.get("headAction") not in DELETED_HEAD]
        if not live:
            warn = "; ".join(self.warnings()) or "only deleted revisions"
            raise SourceError(f"no files at {at} ({warn}); check the depot path and changelist in --source")
        return live

    def rel(self, row: dict) -> str:
        return Path(row["clientFile"]).relative_to(self.ws.root).as_posix()


def _verifiable(row: dict) -> bool:
    # Keyword-expanded and UTF-16 files differ locally from the bytes the server's digest covers.
    kind = row.get("headType", "binary")
    return "+k" not in kind and not kind.startswith(("ktext", "kxtext", "utf16"))


def _sync_once(
    src: P4Source,
    ws: Workspace,
    creds: Credentials,
    reporter: Reporter,
    *,
    verify_full: bool,
    p4_factory: Callable,
) -> FetchResult:
    t0 = time.monotonic()
    p4 = p4_factory()
    exc_type = _exception_type(p4)
    p4.prog = "renderlab-fetch"
    p4.port = src.port
    p4.user = creds.user
    p4.client = client_name(ws.root)
    p4.exception_level = RAISE_ERROR
    s = _Session(p4, src, ws, reporter, exc_type)
    p4.progress = p4_progress(sys.modules[type(p4).__module__], reporter)
    try:
        p4.connect()
    except exc_type as e:
        raise classify(e, f"connecting to {src.port}") from None
    try:
        s.trust(creds)
        s.login(creds)
        change = s.resolve_change()  # before the client spec, so a bad depot path reads as one
        s.ensure_client()
        rows = s.depot_files(change)
        pending = [r for r in rows if r.get("haveRev") != r.get("headRev")]
        ws.ensure_space(sum(int(r.get("fileSize", 0)) for r in pending))
        reporter.log(f"{src.depot_path}@{change}: {len(rows)} files, {len(pending)} to sync")
        ws.prove()  # p4 writes under the client root: it must still be the folder pinned at open

        synced = s.run(f"syncing {src.depot_path}@{change}", "sync", f"{src.depot_path}@{change}")
        synced = [r for r in synced if isinstance(r, dict)]
        moved = [r for r in synced if r.get("action") in TRANSFERRED]
        removed = [r for r in synced if r.get("action") == "deleted"]
        written = {s.rel(r) for r in moved}
        wanted = {s.rel(r) for r in rows}
        for rel in set(ws.have) - wanted:
            ws.have.pop(rel, None)

        reporter.start(
            "verifying", sum(int(r.get("fileSize", 0)) for r in rows if s.rel(r) in written or verify_full)
        )
        damaged = [
            r
            for r in rows
            if _verifiable(r)
            and not ws.check(
                s.rel(r),
                r["digest"].lower(),
                int(r["fileSize"]),
                verify_full or s.rel(r) in written,
                reporter.advance,
            )
        ]
        reporter.finish()
        repaired_bytes = 0
        if damaged:
            reporter.log(f"{len(damaged)} file(s) differ from the depot; force-syncing only those")
            s.run(
                "force-syncing damaged files", "sync", "-f", *[f"{r['depotFile']}@{change}" for r in damaged]
            )
            still = [
                s.rel(r)
                for r in damaged
                if not ws.check(s.rel(r), r["digest"].lower(), int(r["fileSize"]), True)
            ]
            if still:
                raise VerificationError(
                    f"{len(still)} file(s) under {ws.root} still differ from the depot after `p4 sync -f` "
                    f"(first: {still[0]}); check the share's health, then re-run"
                )
            repaired_bytes = sum(int(r["fileSize"]) for r in damaged)
        ws.save()
        ws.publish(
            change,
            f"p4://{src.port}{src.depot_path}",
            ((s.rel(r), int(r["fileSize"]), r["digest"].lower()) for r in rows),
        )
        return FetchResult(
            changelist=change,
            files_total=len(rows),
            files_transferred=len(moved) + len(damaged),
            bytes_transferred=sum(int(r.get("fileSize", 0)) for r in moved) + repaired_bytes,
            files_removed=len(removed),
            seconds=time.monotonic() - t0,
        )
    finally:
        reporter.finish()
        with contextlib.suppress(exc_type):
            if p4.connected():
                p4.disconnect()


def _exception_type(p4: Any) -> type:
    """The P4Exception class that belongs to this P4 object's module (the real one or a fake's)."""
    return sys.modules[type(p4).__module__].P4Exception


def _real_p4() -> Any:
    import P4

    return P4.P4()


def fetch_depot(
    src: P4Source,
    dest: Path,
    creds: Credentials,
    reporter: Reporter,
    *,
    verify_full: bool = False,
    retries: int = 4,
    backoff_s: float = 1.0,
    p4_factory: Callable[[], Any] = _real_p4,
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
    deadline_s: float = DEFAULT_DEADLINE_S,
    lock_timeout_s: float = 3600.0,
) -> FetchResult:
    """Fetch with bounded retries on an unreachable server (1, 2, 4, ... s, capped at 30 s); no retry otherwise.

    Retries stop at `retries` or when the next one would start after `deadline_s` (from the first attempt),
    whichever comes first."""
    ws = Workspace.open(dest, ALGORITHM, kind="p4", log=reporter.log)
    started = clock()
    saved_env = {k: os.environ.get(k) for k in ("P4TRUST", "P4TICKETS", "P4CONFIG")}
    try:
        with (
            tempfile.TemporaryDirectory(prefix="rlfetch-p4-") as private,
            ws.locked(lock_timeout_s, reporter.log),
        ):
            # Tickets and the trust file live in a private temp folder, never on the share or in $HOME.
            os.environ["P4TRUST"] = os.path.join(private, "trust")
            os.environ["P4TICKETS"] = os.path.join(private, "tickets")
            os.environ.pop("P4CONFIG", None)
            for attempt in range(1, retries + 2):
                try:
                    return _sync_once(
                        src, ws, creds, reporter, verify_full=verify_full, p4_factory=p4_factory
                    )
                except UnreachableError as e:
                    if attempt > retries:
                        raise UnreachableError(
                            f"{e} -- gave up after {attempt} attempts; check that p4d runs and that {src.port} "
                            "is reachable from here"
                        ) from None
                    delay = min(backoff_s * 2 ** (attempt - 1), 30.0)
                    elapsed = clock() - started
                    if elapsed + delay > deadline_s:
                        raise UnreachableError(
                            f"{e} -- gave up after {attempt} attempts in {elapsed:.0f} s: another retry would "
                            f"pass the --retry-deadline of {deadline_s:.0f} s; check that p4d runs and that "
                            f"{src.port} is reachable from here (or raise --retry-deadline)"
                        ) from None
                    reporter.log(f"attempt {attempt} failed ({e}); retrying in {delay:.0f} s")
                    sleep(delay)
    finally:
        for k, v in saved_env.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    raise AssertionError("unreachable")
