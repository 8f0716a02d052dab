"""The lab's own known_hosts file: SSH host keys recorded on first contact, replaced when a VM is recreated.

Ansible (make lab-hosts) checks every VM's host key against this file (StrictHostKeyChecking=yes), so nobody
answers five prompts at once and a changed key stops the run. A VM the Pulumi program creates (or recreates)
gets new host keys from cloud-init: the VM provider forgets that address here when it creates the VM
(`forget`), and the next `make lab-known-hosts` records the new key (`record`: only addresses not in the file).

    python -m renderlab.lab.known_hosts record STACK_FILE [--file ~/.renderlab/known_hosts]
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable, Iterable
from pathlib import Path

from renderlab.base import cli

ENV = "RENDERLAB_KNOWN_HOSTS"


def default_file() -> Path:
    return Path(os.environ.get(ENV) or Path.home() / ".renderlab" / "known_hosts")


def _lines(path: Path) -> list[str]:
    return path.read_text().splitlines() if path.is_file() else []


def _write(path: Path, lines: list[str]) -> None:
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text("".join(f"{line}\n" for line in lines))
    os.replace(tmp, path)


def known(path: Path) -> set[str]:
    return {line.split()[0] for line in _lines(path) if line.strip() and not line.startswith("#")}


def forget(address: str, path: Path | None = None) -> bool:
    """Drop `address`'s keys (its VM was recreated: new host keys). True if any were there."""
    path = path or default_file()
    lines = _lines(path)
    kept = [line for line in lines if not line.split() or line.split()[0] != address]
    if len(kept) != len(lines):
        _write(path, kept)
        return True
    return False


def keyscan(address: str) -> list[str]:
    """The host's public keys as known_hosts lines (ssh-keyscan; nothing when it does not answer)."""
    out = subprocess.run(
        ["ssh-keyscan", "-T", "10", "-t", "ed25519,ecdsa,rsa", address],
        capture_output=True,
        text=True,
        check=False,
    )
    return [line for line in out.stdout.splitlines() if line and not line.startswith("#")]


def record(
    addresses: Iterable[str], path: Path | None = None, scan: Callable[[str], list[str]] = keyscan
) -> list[str]:
    """Record the keys of the addresses not in the file yet (first contact); returns those recorded."""
    path = path or default_file()
    have = known(path)
    lines = _lines(path)
    added = []
    for address in addresses:
        if address in have:
            continue
        keys = [k for k in scan(address) if k.split()[0] == address]
        if not keys:
            raise OSError(f"{address} gave no SSH host key (ssh-keyscan); is the VM up and reachable?")
        lines.extend(keys)
        added.append(address)
    if added:
        _write(path, lines)
    return added


def main(argv: list[str] | None = None) -> int:
    from renderlab.lab.config import ConfigError, load

    parser = cli.Parser(prog="python -m renderlab.lab.known_hosts", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    r = sub.add_parser("record", help="record the keys of the stack's hosts not in the file yet")
    r.add_argument("stack_file")
    r.add_argument("--file", type=Path, default=None)
    args = parser.parse_args(argv)
    try:
        config = load(args.stack_file)
        added = record([config.address(n) for n in config.hosts], args.file)
    except (ConfigError, OSError) as e:
        print(f"known_hosts: error: {e}", file=sys.stderr)
        return 1
    print(f"known_hosts: {len(added)} host(s) recorded in {args.file or default_file()}")
    return 0


if __name__ == "__main__":
    sys.exit(cli.guard("known_hosts", main))
