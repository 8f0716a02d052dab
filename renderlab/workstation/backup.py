"""The workstation's share of the backups: the stack file, its Pulumi state and the generated host secrets,
encrypted with restic (the same tool the hosts use), into a repository of your choosing (a folder on another
disk, sftp:..., s3:...).

    python -m renderlab.workstation.backup backup --repo REPO [--stack-file F] [--pulumi-stack S] [--file F ...]
    python -m renderlab.workstation.backup restore --repo REPO --target DIR [--snapshot ID]

The repository password is a file (--password-file, default ~/.config/renderlab/workstation-backup.password),
generated 0600 on the first backup. Keep a copy of it away from this machine: without it the backup is
unreadable, and a workstation that dies takes its own copy along. The Pulumi state is `pulumi stack export`,
in which the stack's secrets stay encrypted (ciphertext).

Exit status: 0 done, 1 the input or environment is wrong (restic missing, repository unreachable, a file
unreadable), 2 bad arguments, 70 internal error. The last line on stdout is one JSON result.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import subprocess
import sys
import time
from pathlib import Path

from renderlab.base import cli
from renderlab.base.errors import CommandError
from renderlab.lab.host_secrets import write_private

TAG = "workstation"
STATE_TAG = "pulumi_state"
DEFAULT_PASSWORD_FILE = Path("~/.config/renderlab/workstation-backup.password")
NO_REPOSITORY = "Is there a repository at the following location?"


class BackupError(CommandError):
    """restic or a file failed: the message says which and how to fix it (exit 1)."""


def _restic() -> str:
    found = shutil.which("restic")
    if found is None:
        raise BackupError("restic is not on PATH; install it with `apt-get install restic` (or `make apt`)")
    return found


def _env(repo: str, password_file: Path) -> dict[str, str]:
    return {**os.environ, "RESTIC_REPOSITORY": repo, "RESTIC_PASSWORD_FILE": str(password_file)}


def _run(args: list[str], env: dict[str, str], **kw) -> subprocess.CompletedProcess:
    return subprocess.run([_restic(), *args], env=env, capture_output=True, check=False, **kw)


def _fail(what: str, proc: subprocess.CompletedProcess) -> BackupError:
    err = proc.stderr.decode("utf-8", "replace") if isinstance(proc.stderr, bytes) else proc.stderr
    return BackupError(f"{what} failed (restic exit {proc.returncode}): {cli.one_line(err)[:400]}")


def ensure_password(path: Path) -> bool:
    """Create a random password file (0600, folders 0700) if there is none; True when it was created."""
    if path.exists():
        return False
    write_private(path, secrets.token_urlsafe(32) + "\n")
    return True


def ensure_repository(env: dict[str, str]) -> bool:
    """Open the repository, creating it when there is none; True when it was created."""
    opened = _run(["cat", "config"], env)
    if opened.returncode == 0:
        return False
    if NO_REPOSITORY not in opened.stderr.decode("utf-8", "replace"):
        raise _fail(f"opening {env['RESTIC_REPOSITORY']}", opened)
    made = _run(["init"], env)
    if made.returncode != 0:
        raise _fail(f"creating {env['RESTIC_REPOSITORY']}", made)
    return True


def _snapshot_id(stdout: bytes) -> str:
    for line in reversed(stdout.decode("utf-8", "replace").splitlines()):
        if '"snapshot_id"' in line:
            return json.loads(line)["snapshot_id"]
    return ""


def backup(repo: str, password_file: Path, files: list[Path], pulumi_stack: str | None) -> dict:
    for f in files:
        if not f.is_file():
            raise BackupError(f"{f} is not a readable file; pass the stack file and the host secrets files")
    created = ensure_password(password_file)
    env = _env(repo, password_file)
    ensure_repository(env)
    t0 = time.monotonic()
    result: dict = {"repository": repo, "files": [str(f.absolute()) for f in files]}
    if files:
        done = _run(["backup", "--json", "--tag", TAG, *[str(f.absolute()) for f in files]], env)
        if done.returncode != 0:
            raise _fail("restic backup", done)
        result["snapshot"] = _snapshot_id(done.stdout)
    if pulumi_stack:
        exported = subprocess.run(
            ["pulumi", "stack", "export", "--stack", pulumi_stack], capture_output=True, check=False
        )
        if exported.returncode != 0:
            raise BackupError(
                f"`pulumi stack export --stack {pulumi_stack}` failed: "
                f"{cli.one_line(exported.stderr.decode('utf-8', 'replace'))[:300]}"
            )
        name = f"pulumi-state-{pulumi_stack}.json"
        done = _run(
            ["backup", "--json", "--tag", STATE_TAG, "--stdin", "--stdin-filename", name],
            env,
            input=exported.stdout,
        )
        if done.returncode != 0:
            raise _fail("restic backup of the Pulumi state", done)
        result["state_snapshot"] = _snapshot_id(done.stdout)
    result["seconds"] = round(time.monotonic() - t0, 2)
    if created:
        result["password_file"] = str(password_file)
        print(
            f"backup: a new repository password is in {password_file}; keep a copy away from this machine",
            file=sys.stderr,
        )
    return result


def restore(repo: str, password_file: Path, target: Path, snapshot: str) -> dict:
    if not password_file.is_file():
        raise BackupError(f"{password_file} is missing; pass --password-file with the repository's password")
    env = _env(repo, password_file)
    t0 = time.monotonic()
    done = _run(["restore", snapshot, "--tag", TAG, "--target", str(target)], env)
    if done.returncode != 0:
        raise _fail(f"restic restore {snapshot}", done)
    return {
        "repository": repo,
        "snapshot": snapshot,
        "target": str(target),
        "seconds": round(time.monotonic() - t0, 2),
    }


@cli.command("backup")
def main(argv: list[str] | None = None) -> int:
    parser = cli.Parser(prog="python -m renderlab.workstation.backup", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    for name in ("backup", "restore"):
        p = sub.add_parser(name)
        p.add_argument("--repo", required=True, help="restic repository: a folder, sftp:..., s3:...")
        p.add_argument("--password-file", type=Path, default=DEFAULT_PASSWORD_FILE)
    b = sub.choices["backup"]
    b.add_argument("--stack-file", type=Path, action="append", default=[], help="Pulumi.<stack>.yaml")
    b.add_argument("--file", type=Path, action="append", default=[], help="a host secrets file (repeatable)")
    b.add_argument("--pulumi-stack", help="also back up `pulumi stack export` of this stack")
    r = sub.choices["restore"]
    r.add_argument("--target", type=Path, required=True, help="folder to restore into (/ for in place)")
    r.add_argument("--snapshot", default="latest")
    args = parser.parse_args(argv)
    password_file = args.password_file.expanduser()
    try:
        if args.command == "backup":
            files = [*args.stack_file, *args.file]
            if not files and not args.pulumi_stack:
                parser.error("nothing to back up: give --stack-file, --file or --pulumi-stack")
            result = backup(args.repo, password_file, files, args.pulumi_stack)
        else:
            result = restore(args.repo, password_file, args.target, args.snapshot)
    except OSError as e:
        raise BackupError(f"{e.filename or ''}: {e.strerror or e}") from None
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
