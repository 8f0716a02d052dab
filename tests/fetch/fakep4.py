"""A P4-shaped fake: the slice of p4python's `P4` class the fetch uses, backed by an in-memory depot.

Why: no Perforce server can run on the CI machines. What is faithful to p4python 2026.1:
- `P4Exception` and `Spec` ARE p4python's own classes (imported from P4), raised the way the C adapter
  raises them: `value` is "[P4#run] Errors during command execution( "p4 cmd args" )" followed by the
  messages, `.errors` / `.warnings` are lists of message strings.
- `p4.progress` (a P4.Progress) gets init/setDescription/setTotal/update/done during a sync.
- `exception_level` 2 raises on errors and warnings, 1 on errors only, 0 never; `p4.errors` and
  `p4.warnings` hold the last command's messages; `run_<cmd>`, `fetch_<spec>`, `save_<spec>`, and
  `run_login` (which feeds `p4.password` as input) dispatch like P4.__getattr__.
- `connect()` failures carry the real message text ("Connect to server failed; check $P4PORT." /
  "TCP connect to HOST:PORT failed." / "connect: HOST:PORT: Connection refused").
- Command output is tagged dicts with the real field names (sync: depotFile, clientFile, rev, action,
  fileSize, totalFileSize, totalFileCount, change; fstat -Ol: ... digest (upper-case MD5), fileSize, haveRev).
- Messages: "<spec> - file(s) up-to-date.", "<spec> - no such file(s).", "<path> - must refer to client
  '<client>'.", "Perforce password (P4PASSWD) invalid or unset.", "Password invalid.", the SSL
  "authenticity ... can't be established" and "IDENTIFICATION HAS CHANGED" errors.
What is simplified: one depot, one-line client views (`//depot/dir/... //client/...`), binary files only,
no changelist/rev ranges beyond `@N`, tickets are per connection.
"""

from __future__ import annotations

import errno
import hashlib
import os
import socket
import stat
from dataclasses import dataclass, field
from pathlib import Path

from P4 import P4Exception, Progress, Spec

__all__ = ["SERVERS", "P4", "P4Exception", "Progress", "FakeServer"]


@dataclass
class Rev:
    rev: int
    change: int
    action: str  # add, edit, delete
    content: bytes | None


@dataclass
class FakeServer:
    """An in-memory depot reachable through `P4` objects whose `port` equals `port`."""

    port: str
    users: dict[str, str] = field(default_factory=dict)  # user -> password
    fingerprint: str | None = None  # set for ssl: ports
    down: bool = False
    refuse_connects: int = 0  # the next N connects fail as if nothing listened
    drop_after_commands: int | None = None  # the connection breaks after N more commands
    write_error: int | None = None  # errno raised by the client when it writes a synced file
    files: dict[str, list[Rev]] = field(default_factory=dict)
    changes: list[tuple[int, str, str]] = field(default_factory=list)  # (change, user, desc)
    clients: dict[str, dict] = field(default_factory=dict)
    have: dict[str, dict[str, int]] = field(default_factory=dict)
    commands: list[str] = field(default_factory=list)

    def submit(self, files: dict[str, bytes | None], user: str = "admin", desc: str = "change") -> int:
        """Submit one changelist: content for add/edit, None for delete. Returns its number."""
        change = len(self.changes) + 1
        for path, content in files.items():
            revs = self.files.setdefault(path, [])
            live = bool(revs) and revs[-1].action != "delete"
            action = "delete" if content is None else ("edit" if live else "add")
            revs.append(Rev(len(revs) + 1, change, action, content))
        self.changes.append((change, user, desc))
        return change

    def at(self, path: str, change: int) -> Rev | None:
        revs = [r for r in self.files.get(path, []) if r.change <= change]
        return revs[-1] if revs else None


SERVERS: dict[str, FakeServer] = {}


def _md5(data: bytes) -> str:
    return hashlib.md5(data).hexdigest().upper()


def _split_spec(spec: str) -> tuple[str, int | None]:
    if "@" in spec:
        path, change = spec.rsplit("@", 1)
        return path, int(change)
    return spec, None


class P4:
    """Mirrors p4python's P4 for: connect/disconnect/connected, run, run_*, run_login, fetch_/save_ specs."""

    RAISE_ALL, RAISE_ERROR, RAISE_NONE = 2, 1, 0

    def __init__(self) -> None:
        self.port = os.environ.get("P4PORT", "perforce:1666")
        self.user = os.environ.get("P4USER", "root")
        self.password = ""
        self.client = "fakehost"
        self.prog = "unnamed p4-python script"
        self.exception_level = 2
        self.input = None
        self.errors: list[str] = []
        self.warnings: list[str] = []
        self.messages: list = []
        self.progress = None
        self._server: FakeServer | None = None
        self._logged_in = False
        self._trusted: str | None = None

    # --- connection -------------------------------------------------------------------------------------
    def connect(self) -> P4:
        server = SERVERS.get(self.port)
        hostport = self.port.removeprefix("ssl:").removeprefix("tcp:")
        if server is None or server.down or server.refuse_connects > 0:
            if server is not None and server.refuse_connects > 0:
                server.refuse_connects -= 1
            msg = "Connect to server failed; check $P4PORT."
            value = f"[P4.connect()] {msg}\nTCP connect to {hostport} failed.\nconnect: {hostport}: Connection refused\n"
            raise P4Exception((value, [msg], []))
        self._server = server
        return self

    def connected(self) -> bool:
        return self._server is not None

    def disconnect(self) -> None:
        self._server = None

    def __getattr__(self, name: str):
        if name.startswith("run_"):
            return lambda *args: self.run(name[4:], *args)
        if name.startswith("fetch_"):
            return lambda *args: self.run(name[6:], "-o", *args)[0]
        if name.startswith("save_"):
            return lambda spec, *args: self._save(name[5:], spec, *args)
        raise AttributeError(name)

    def _save(self, cmd: str, spec: dict, *args: str) -> list:
        self.input = spec
        return self.run(cmd, "-i", *args)

    def run_login(self, *args: str) -> list:
        self.input = self.password
        return self.run("login", *args)

    # --- dispatch -----------------------------------------------------------------------------------------
    def run(self, cmd: str, *args: str) -> list:
        if self._server is None:
            raise P4Exception("P4#run - not connected.")
        server = self._server
        self.errors, self.warnings = [], []
        line = " ".join(["p4", cmd, *args])
        server.commands.append(line)
        if server.drop_after_commands is not None:
            if server.drop_after_commands <= 0:
                server.drop_after_commands = None  # one break per setting
                self._server = None
                self._raise_now(line, ["TCP receive failed.\nread: socket: Connection reset by peer"])
            server.drop_after_commands -= 1
        handler = getattr(self, f"_cmd_{cmd}", None)
        if handler is None:
            self.errors = ["Unknown command.  Try 'p4 help' for info."]
            out: list = []
        elif cmd not in {"login", "trust"} and self._check_session(server):
            out = []
        else:
            out = handler(server, list(args))
        level = self.exception_level
        if (self.errors and level >= 1) or (self.warnings and level >= 2):
            self._raise_now(line, self.errors, self.warnings)
        return out

    def _raise_now(self, line: str, errors: list[str], warnings: list[str] | None = None) -> None:
        warnings = warnings or []
        kind = "Errors" if errors else "Warnings"
        body = "".join(f'\n\t[Error]: "{e}"' for e in errors) + "".join(
            f"\n\t[Warning]: '{w}'" for w in warnings
        )
        value = f'[P4#run] {kind} during command execution( "{line}" )\n{body}'
        raise P4Exception((value, list(errors), list(warnings)))

    def _check_session(self, server: FakeServer) -> bool:
        """SSL trust, then authentication; sets self.errors and returns True when the command is refused."""
        if server.fingerprint is not None and self._trusted != server.fingerprint:
            addr = self.port.removeprefix("ssl:")
            if self._trusted is None:
                self.errors = [
                    f"The authenticity of '{addr}' can't be established,\nthis may be your first attempt to "
                    f"connect to this P4PORT.\nThe fingerprint for the key sent to your client is\n"
                    f"{server.fingerprint}\nTo allow connection use the 'p4 trust' command."
                ]
            else:
                self.errors = [
                    "******* WARNING P4PORT IDENTIFICATION HAS CHANGED! *******\nIt is possible that someone "
                    "is intercepting your connection\nto the Perforce P4PORT '"
                    f"{addr}'\nIf this is not a scheduled key change, then you should contact\nyour Perforce "
                    f"administrator.\nThe fingerprint for the mismatched key sent to your client is\n"
                    f"{server.fingerprint}\nTo allow connection use the 'p4 trust' command."
                ]
            return True
        # Security level 0: a user without a password needs none; one with a password needs a ticket.
        ok = self._logged_in or self.user not in server.users or self.password == _ticket(server, self.user)
        if not ok:
            self.errors = ["Perforce password (P4PASSWD) invalid or unset."]
            return True
        return False

    # --- commands -----------------------------------------------------------------------------------------
    def _cmd_trust(self, server: FakeServer, args: list[str]) -> list:
        if server.fingerprint is None:
            self.errors = ["Not an SSL connection."]
            return []
        if args[:1] == ["-i"] and len(args) == 2:
            self._trusted = args[1]
            return [f"Added trust for P4PORT '{self.port}' ({self.port.removeprefix('ssl:')})"]
        self.errors = ["Usage: trust [ -y -n -d -f -l -r ] [ -i fingerprint ]"]
        return []

    def _cmd_login(self, server: FakeServer, args: list[str]) -> list:
        if self._check_trust_only(server):
            return []
        if args == ["-s"]:
            if self._logged_in or self.password == _ticket(server, self.user):
                return [{"User": self.user, "TicketExpiration": "43200"}]
            self.errors = ["Perforce password (P4PASSWD) invalid or unset."]
            return []
        if self.user not in server.users:
            return ["'login' not necessary, no password set for this user."]
        if self.input != server.users[self.user]:
            self.errors = ["Password invalid."]
            return []
        self._logged_in = True
        return [{"User": self.user, "TicketExpiration": "43200"}]

    def _check_trust_only(self, server: FakeServer) -> bool:
        if server.fingerprint is not None and self._trusted != server.fingerprint:
            saved = self._logged_in
            self._logged_in = True
            refused = self._check_session(server)
            self._logged_in = saved
            return refused
        return False

    def _cmd_client(self, server: FakeServer, args: list[str]) -> list:
        if args[:1] == ["-o"]:
            name = args[1] if len(args) > 1 else self.client
            if name in server.clients:
                spec = Spec()
                spec.update(
                    {k: (list(v) if isinstance(v, list) else v) for k, v in server.clients[name].items()}
                )
                return [spec]
            spec = Spec()
            spec.update(
                {
                    "Client": name,
                    "Owner": self.user,
                    "Host": socket.gethostname(),
                    "Description": "Created by " + self.user + ".\n",
                    "Root": os.getcwd(),
                    "Options": "noallwrite noclobber nocompress unlocked nomodtime normdir",
                    "SubmitOptions": "submitunchanged",
                    "LineEnd": "local",
                    "View": [f"//depot/... //{name}/..."],
                }
            )
            return [spec]
        if args[:1] == ["-i"]:
            spec = dict(self.input or {})
            name = spec.get("Client", self.client)
            for line in spec.get("View", []):
                depot_side, client_side = line.split()
                if not depot_side.startswith("//depot/") or not client_side.startswith(f"//{name}/"):
                    self.errors = [
                        f"Error in client specification.\nMapping '{line}' is not under '//depot/...'."
                    ]
                    return []
            spec = {k: v for k, v in spec.items() if v not in ("", None)}
            existed = server.clients.get(name)
            server.clients[name] = spec
            return [f"Client {name} {'not changed' if existed == spec else 'saved'}."]
        self.errors = ["Usage: client [ -f -t template ] [ -o | -i ] [ clientname ]"]
        return []

    def _view(self, server: FakeServer) -> tuple[str, Path]:
        spec = server.clients[self.client]
        depot_side = spec["View"][0].split()[0]
        return depot_side.removesuffix("..."), Path(spec["Root"])

    def _known_depot(self, path: str) -> bool:
        return path.startswith("//depot/")

    def _cmd_changes(self, server: FakeServer, args: list[str]) -> list:
        spec = args[-1]
        path, upto = _split_spec(spec)
        if not self._known_depot(path):
            self.errors = [f"{path} - must refer to client '{self.client}'."]
            return []
        prefix = path.removesuffix("...")
        out = []
        for change, user, desc in reversed(server.changes):
            if upto is not None and change > upto:
                continue
            if any(
                p.startswith(prefix) and any(r.change == change for r in revs)
                for p, revs in server.files.items()
            ):
                out.append(
                    {
                        "change": str(change),
                        "time": "1760000000",
                        "user": user,
                        "client": "seed",
                        "status": "submitted",
                        "changeType": "public",
                        "path": prefix + "...",
                        "desc": desc + "\n",
                    }
                )
        return out[:1] if "-m1" in args else out

    def _select(self, server: FakeServer, spec: str) -> tuple[str, int, list[tuple[str, Rev]]] | None:
        path, change = _split_spec(spec)
        if not self._known_depot(path):
            self.errors = [f"{path} - must refer to client '{self.client}'."]
            return None
        change = change if change is not None else len(server.changes)
        prefix = path.removesuffix("...") if path.endswith("...") else None
        picked = []
        for p in sorted(server.files):
            if (prefix is not None and p.startswith(prefix)) or p == path:
                rev = server.at(p, change)
                if rev is not None:
                    picked.append((p, rev))
        return path, change, picked

    def _local(self, server: FakeServer, depot_file: str) -> Path:
        view_prefix, root = self._view(server)
        return root / depot_file.removeprefix(view_prefix)

    def _cmd_fstat(self, server: FakeServer, args: list[str]) -> list:
        sel = self._select(server, args[-1])
        if sel is None:
            return []
        _path, _change, picked = sel
        have = server.have.get(self.client, {})
        out = []
        for p, rev in picked:
            row = {
                "depotFile": p,
                "clientFile": str(self._local(server, p)),
                "isMapped": "",
                "headAction": rev.action,
                "headType": "binary",
                "headTime": "1760000000",
                "headRev": str(rev.rev),
                "headChange": str(rev.change),
                "headModTime": "1760000000",
            }
            if p in have:
                row["haveRev"] = str(have[p])
            if rev.content is not None and "-Ol" in args:
                row["digest"] = _md5(rev.content)
                row["fileSize"] = str(len(rev.content))
            out.append(row)
        if not out:
            self.warnings = [f"{args[-1]} - no such file(s)."]
        return out

    def _cmd_sync(self, server: FakeServer, args: list[str]) -> list:
        force = "-f" in args
        specs = [a for a in args if not a.startswith("-")]
        have = server.have.setdefault(self.client, {})
        options = server.clients[self.client]["Options"].split()
        out: list[dict] = []
        for spec in specs:
            sel = self._select(server, spec)
            if sel is None:
                return []
            path, change, picked = sel
            if not picked:
                self.warnings.append(f"{spec} - no such file(s).")
                continue
            # Files on the have-list that do not exist at this change are removed, like any deletion.
            prefix = path.removesuffix("...")
            gone = [p for p in have if p.startswith(prefix) and p not in dict(picked)]
            picked += [(p, Rev(0, change, "delete", None)) for p in gone]
            before = len(out)
            moving = [p for p, rev in picked if force or have.get(p) != (rev.rev or None)]
            if self.progress is not None and moving:  # like p4python: init, units, total, updates, done
                self.progress.init(2)
                self.progress.setDescription("sync", Progress.UNIT_FILES)
                self.progress.setTotal(len(moving))
            for p, rev in picked:
                local = self._local(server, p)
                had = have.get(p)
                if rev.content is None:
                    if had is not None:
                        if local.exists():
                            local.chmod(0o644)
                            local.unlink()
                            if "rmdir" in options:
                                _prune(local.parent, self._view(server)[1])
                        del have[p]
                        out.append(
                            {
                                "depotFile": p,
                                "clientFile": str(local),
                                "rev": str(rev.rev) if rev.rev else "none",
                                "action": "deleted",
                                "change": str(rev.change),
                            }
                        )
                    continue
                if had == rev.rev and not force:
                    continue
                action = "refreshed" if had == rev.rev else ("updated" if had is not None else "added")
                if (
                    had is None
                    and local.exists()
                    and local.stat().st_mode & stat.S_IWUSR
                    and "noclobber" in options
                ):
                    self.errors.append(f"Can't clobber writable file {local}")
                    continue
                if server.write_error is not None:
                    self.errors.append(f"write: {local}: {os.strerror(server.write_error)}")
                    continue
                local.parent.mkdir(parents=True, exist_ok=True)
                if local.exists():
                    local.chmod(0o644)
                tmp = local.with_name(f".{local.name}.p4tmp")
                tmp.write_bytes(rev.content)
                tmp.chmod(0o644 if "allwrite" in options else 0o444)
                os.replace(tmp, local)
                have[p] = rev.rev
                if self.progress is not None:
                    self.progress.update(len(out) - before + 1)
                out.append(
                    {
                        "depotFile": p,
                        "clientFile": str(local),
                        "rev": str(rev.rev),
                        "action": action,
                        "fileSize": str(len(rev.content)),
                        "change": str(rev.change),
                    }
                )
            if self.progress is not None and moving:
                self.progress.done(1 if self.errors else 0)
            if len(out) == before and not self.errors:
                self.warnings.append(f"{spec} - file(s) up-to-date.")
        if out:
            out[0]["totalFileSize"] = str(sum(int(r.get("fileSize", 0)) for r in out))
            out[0]["totalFileCount"] = str(len(out))
        return out


def _ticket(server: FakeServer, user: str) -> str:
    """The ticket `p4 login -p` would print for this user: 32 upper-case hex digits."""
    return hashlib.md5(f"{server.port}:{user}:{server.users.get(user)}".encode()).hexdigest().upper()


def ticket_for(server: FakeServer, user: str) -> str:
    return _ticket(server, user)


def _prune(folder: Path, root: Path) -> None:
    while folder != root and folder.is_dir() and not any(folder.iterdir()):
        folder.rmdir()
        folder = folder.parent


# The errno a full share raises, for tests that set FakeServer.write_error.
ENOSPC = errno.ENOSPC
