"""The service secrets Ansible needs, as one vars file (mode 0600, never in git).

Real lab: `pulumi up` generates them (random) and exports them as the secret stack output `host_secrets`, a
map with exactly the keys in SECRET_NAMES; `from-pulumi` writes that output to a 0600 vars file for
`ansible-playbook -e @FILE` (or encrypt it with `ansible-vault encrypt FILE`). Local lab: `generate` makes
fresh random values. Every task that reads one of these has `no_log: true`.

    python -m renderlab.lab.host_secrets generate -o FILE
    python -m renderlab.lab.host_secrets from-pulumi -o FILE [--stack STACK]
"""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys
from pathlib import Path

from renderlab.base import atomic, cli
from renderlab.lab import passphrase

PULUMI_OUTPUT = "host_secrets"
# The generated service secrets, name -> (length Pulumi generates, what it is for). Pulumi's Lab component
# generates exactly these (infra/lab.py) and the hosts layer reads exactly these.
SERVICE_SECRETS = {
    "renderlab_share_password": (40, "SMB password of the share user (samba role)"),
    "renderlab_p4_super_password": (40, "Perforce super user password (perforce role)"),
    "renderlab_p4_service_password": (40, "Perforce read-only service user password (the fetch Job)"),
    "renderlab_airflow_admin_password": (40, "Airflow admin user password (airflow role)"),
    "renderlab_airflow_db_password": (40, "Airflow's PostgreSQL password (airflow role)"),
    "renderlab_airflow_secret_key": (48, "Airflow API/JWT secret key (airflow role)"),
}
SECRET_NAMES = {name: why for name, (_, why) in SERVICE_SECRETS.items()}
# Not generated: the stack's own secret notify_webhook_url, in the map only when the stack sets it.
WEBHOOK_URL = "renderlab_notify_webhook_url"
OPTIONAL_NAMES = {
    WEBHOOK_URL: "run notifications' webhook URL (airflow role; the stack's notify_webhook_url)"
}


class SecretsError(Exception):
    pass


def generate() -> dict[str, str]:
    # URL-safe, no quoting issues in config files; 32 bytes of entropy each.
    return {name: secrets.token_urlsafe(32) for name in SECRET_NAMES}


def check(values: dict, source: str) -> dict[str, str]:
    missing = sorted(set(SECRET_NAMES) - set(values))
    unknown = sorted(set(values) - set(SECRET_NAMES) - set(OPTIONAL_NAMES))
    empty = sorted(k for k in values if not str(values[k]))
    problems = [f"missing {k} ({SECRET_NAMES[k]})" for k in missing]
    problems += [f"unknown key {k}" for k in unknown]
    problems += [f"{k} is empty" for k in empty]
    if problems:
        raise SecretsError(
            f"{source}: " + "; ".join(problems) + f". The map must hold exactly: {', '.join(SECRET_NAMES)}"
            f" (and optionally {', '.join(OPTIONAL_NAMES)})"
        )
    return {k: str(values[k]) for k in [*SECRET_NAMES, *OPTIONAL_NAMES] if k in values}


def from_pulumi(stack: str | None) -> dict[str, str]:
    cmd = ["pulumi", "stack", "output", PULUMI_OUTPUT, "--show-secrets", "--json"]
    if stack:
        cmd += ["--stack", stack]
    try:
        # Pulumi cannot prompt here (its output is captured, stdin closed): the passphrase must come from
        # the environment or the passphrase file (renderlab/lab/passphrase.py), said before Pulumi runs.
        env = passphrase.pulumi_env()
    except passphrase.PassphraseError as e:
        raise SecretsError(str(e)) from None
    try:
        out = subprocess.run(
            cmd, check=True, capture_output=True, text=True, env=env, stdin=subprocess.DEVNULL
        ).stdout
    except FileNotFoundError as e:
        raise SecretsError(
            "the pulumi CLI is not on PATH; install it or run this where `pulumi up` ran"
        ) from e
    except subprocess.CalledProcessError as e:
        # stderr of `pulumi stack output` never holds the secret values.
        hint = ""
        if "passphrase" in e.stderr.lower():
            hint = (
                f"; the passphrase in {passphrase.source(env)} is not the stack's: put the one the stack was "
                f"made with into that file, or set {passphrase.FILE_ENV}"
            )
        raise SecretsError(f"`{' '.join(cmd)}` failed: {e.stderr.strip()}{hint}") from e
    return check(json.loads(out), f"pulumi output {PULUMI_OUTPUT}")


def _private_folders(folder: Path) -> None:
    """Create the missing folders up to `folder` as 0700 whatever the umask (existing ones are left alone)."""
    missing = []
    while not folder.exists():
        missing.append(folder)
        folder = folder.parent
    for d in reversed(missing):
        d.mkdir(mode=0o700, exist_ok=True)
        os.chmod(d, 0o700)  # mkdir's mode is masked by the umask; this is not


def write(path: Path, values: dict[str, str]) -> None:
    _private_folders(path.absolute().parent)
    atomic.write_yaml(path, values, mode=0o600)  # private from the first byte


def main(argv: list[str] | None = None) -> int:
    parser = cli.Parser(
        prog="python -m renderlab.lab.host_secrets",
        description="Write the hosts' service secrets to a 0600 vars file.",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    gen = sub.add_parser("generate", help="fresh random secrets (local lab)")
    gen.add_argument("-o", "--output", required=True)
    pul = sub.add_parser("from-pulumi", help=f"the stack output {PULUMI_OUTPUT} (real lab)")
    pul.add_argument("-o", "--output", required=True)
    pul.add_argument("--stack")
    args = parser.parse_args(argv)
    try:
        values = generate() if args.command == "generate" else from_pulumi(args.stack)
    except SecretsError as e:
        print(f"host_secrets: error: {e}", file=sys.stderr)
        return 1
    try:
        write(Path(args.output), values)
    except OSError as e:
        print(
            f"host_secrets: error: cannot write {args.output}: {e.strerror or e}; pick a writable path",
            file=sys.stderr,
        )
        return 1
    print(f"{args.output}: {len(values)} secrets written (mode 0600)")
    return 0


if __name__ == "__main__":
    sys.exit(cli.guard("host_secrets", main))
