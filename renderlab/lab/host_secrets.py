"""The service secrets Ansible needs, as one vars file (mode 0600, never in git).

Real lab: `pulumi up` generates them (random) and exports them as the secret stack output `host_secrets`, a
map with exactly the keys in SECRET_NAMES; `from-pulumi` writes that output to a 0600 vars file for
`ansible-playbook -e @FILE` (or encrypt it with `ansible-vault encrypt FILE`). Local lab: `generate` makes
fresh random values. Every task that reads one of these has `no_log: true`.

Each secret is drawn on its own from the OS CSPRNG (`make_value`, also what Pulumi's GeneratedSecret runs):
no key is derived from another. Rotation (docs/security.md): `rotate NAME` draws a new value; for Airflow's
Fernet key the old one is kept in PREVIOUS_FERNET_KEYS so that Airflow can still read what it encrypted
(`fernet_key = new,old`, then `airflow rotate-fernet-key`), and `retire-fernet` drops it afterwards.

    python -m renderlab.lab.host_secrets generate -o FILE
    python -m renderlab.lab.host_secrets from-pulumi -o FILE [--stack STACK]
    python -m renderlab.lab.host_secrets rotate NAME -f FILE
    python -m renderlab.lab.host_secrets retire-fernet -f FILE
"""

from __future__ import annotations

import base64
import binascii
import json
import os
import secrets
import string
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import yaml

from renderlab.base import atomic, cli
from renderlab.base.errors import CommandError
from renderlab.lab import lab_ca, passphrase

PULUMI_OUTPUT = "host_secrets"
ALPHABET = string.ascii_letters + string.digits  # safe in every config file format


@dataclass(frozen=True)
class Secret:
    length: int
    why: str
    # alphanumeric: `length` letters and digits; fernet: a Fernet key (32 random bytes, url-safe base64: 44);
    # key32: a 32-byte key in standard base64 (44), as the Kubernetes API server's encryption providers take it;
    # lab_ca: the lab CA's key and self-signed certificate as one PEM bundle (renderlab/lab/lab_ca.py).
    format: Literal["alphanumeric", "fernet", "key32", "lab_ca"] = "alphanumeric"


FERNET_LENGTH = 44
KEY32_LENGTH = 44
# The generated service secrets. Pulumi's Lab component generates exactly these (infra/vms.py) and the hosts
# layer reads exactly these.
SERVICE_SECRETS = {
    "renderlab_share_password": Secret(40, "SMB password of the share user (samba role)"),
    "renderlab_p4_super_password": Secret(40, "Perforce super user password (perforce role)"),
    "renderlab_p4_service_password": Secret(40, "Perforce read-only service user password (the fetch Job)"),
    "renderlab_airflow_admin_password": Secret(40, "Airflow admin user password (airflow role)"),
    "renderlab_airflow_db_password": Secret(40, "Airflow's PostgreSQL password (airflow role)"),
    "renderlab_airflow_api_secret_key": Secret(48, "Airflow API server's secret key (airflow role)"),
    "renderlab_airflow_jwt_secret": Secret(48, "Airflow's JWT signing secret: API tokens (airflow role)"),
    "renderlab_airflow_fernet_key": Secret(
        FERNET_LENGTH, "Airflow's Fernet key: encrypts connections and variables (airflow role)", "fernet"
    ),
    "renderlab_backup_password": Secret(48, "password of the hosts' restic repositories (backup role)"),
    "renderlab_kube_encryption_key": Secret(
        KEY32_LENGTH,
        "encrypts the cluster's Secrets at rest in etcd (kube_control_plane role, secretbox)",
        "key32",
    ),
    "renderlab_registry_password": Secret(40, "the image registry's push/pull user password (htpasswd)"),
    "renderlab_lab_ca": Secret(
        0, "the lab CA (key + certificate) that signs Airflow's, the registry's and p4d's TLS", "lab_ca"
    ),
}
SECRET_NAMES = {name: spec.why for name, spec in SERVICE_SECRETS.items()}
FERNET_KEY = "renderlab_airflow_fernet_key"
LAB_CA = "renderlab_lab_ca"
# Not generated: the stack's own secret notify_webhook_url, in the map only when the stack sets it; and the Fernet
# keys a rotation retired but Airflow may still need to read (a list, newest first).
WEBHOOK_URL = "renderlab_notify_webhook_url"
PREVIOUS_FERNET_KEYS = "renderlab_airflow_fernet_previous_keys"
OPTIONAL_NAMES = {
    WEBHOOK_URL: "run notifications' webhook URL (airflow role; the stack's notify_webhook_url)",
    PREVIOUS_FERNET_KEYS: "Fernet keys replaced by a rotation, still accepted until `retire-fernet`",
    "renderlab_backup_s3_access_key_id": "the S3 backup target's access key id (the stack's backup_s3_access_key_id)",
    "renderlab_backup_s3_secret_access_key": "the S3 backup target's secret key (the stack's backup_s3_secret_access_key)",
}
# The stack's own secrets handed on to the hosts unchanged: stack key -> host secret name.
FROM_STACK = {
    "notify_webhook_url": WEBHOOK_URL,
    "backup_s3_access_key_id": "renderlab_backup_s3_access_key_id",
    "backup_s3_secret_access_key": "renderlab_backup_s3_secret_access_key",
}


class SecretsError(CommandError):
    pass


def make_value(spec: Secret) -> str:
    """A fresh value from the OS CSPRNG, independent of every other."""
    if spec.format == "lab_ca":
        return lab_ca.new_ca()
    if spec.format == "fernet":
        return base64.urlsafe_b64encode(
            secrets.token_bytes(32)
        ).decode()  # = cryptography's Fernet.generate_key
    if spec.format == "key32":
        return base64.b64encode(secrets.token_bytes(32)).decode()
    return "".join(secrets.choice(ALPHABET) for _ in range(spec.length))


def is_fernet_key(value: str) -> bool:
    try:
        return len(value) == FERNET_LENGTH and len(base64.urlsafe_b64decode(value.encode("ascii"))) == 32
    except (binascii.Error, UnicodeEncodeError, ValueError):
        return False


def is_key32(value: str) -> bool:
    try:
        return len(base64.b64decode(value.encode("ascii"), validate=True)) == 32
    except (binascii.Error, UnicodeEncodeError, ValueError):
        return False


def generate() -> dict[str, str]:
    return {name: make_value(spec) for name, spec in SERVICE_SECRETS.items()}


def check(values: dict, source: str, may_lack: str | None = None) -> dict:
    """The map as the roles take it; `may_lack`: the one generated secret `rotate` is about to draw (a file
    written before that secret existed gets it that way)."""
    missing = sorted(set(SECRET_NAMES) - set(values) - {may_lack})
    unknown = sorted(set(values) - set(SECRET_NAMES) - set(OPTIONAL_NAMES))
    empty = sorted(k for k in values if k != PREVIOUS_FERNET_KEYS and not str(values[k]))
    problems = [
        f"missing {k} ({SECRET_NAMES[k]}"
        + (f"; a file older than it gets one with `rotate {k}`)" if k in SERVICE_SECRETS else ")")
        for k in missing
    ]
    problems += [f"unknown key {k}" for k in unknown]
    problems += [f"{k} is empty" for k in empty]
    fernet = [values.get(FERNET_KEY)] if values.get(FERNET_KEY) else []
    previous = values.get(PREVIOUS_FERNET_KEYS, [])
    if not isinstance(previous, list):
        problems.append(f"{PREVIOUS_FERNET_KEYS} is not a list")
        previous = []
    if not all(isinstance(k, str) and is_fernet_key(k) for k in fernet + previous):
        problems.append(
            f"{FERNET_KEY} and {PREVIOUS_FERNET_KEYS} must be Fernet keys (32 bytes, url-safe base64); "
            f"draw a new one with `rotate {FERNET_KEY}`"
        )
    problems += [
        f"{k} must be 32 random bytes in base64; draw a new one with `rotate {k}`"
        for k, spec in SERVICE_SECRETS.items()
        if spec.format == "key32" and k in values and values[k] and not is_key32(str(values[k]))
    ]
    if isinstance(values.get(LAB_CA), str) and values[LAB_CA]:
        try:
            lab_ca.load_ca(values[LAB_CA])
        except lab_ca.LabCAError as e:
            problems.append(str(e))
    if problems:
        raise SecretsError(
            f"{source}: " + "; ".join(problems) + f". The map must hold exactly: {', '.join(SECRET_NAMES)}"
            f" (and optionally {', '.join(OPTIONAL_NAMES)})"
        )
    handed = [*SECRET_NAMES, *(k for k in OPTIONAL_NAMES if k != PREVIOUS_FERNET_KEYS)]
    out: dict = {k: str(values[k]) for k in handed if k in values}
    if previous:
        out[PREVIOUS_FERNET_KEYS] = [str(k) for k in previous]
    return out


MAX_FILE_BYTES = 256 * 1024  # a secrets file is a few KiB


def read(path: Path, may_lack: str | None = None) -> dict:
    from renderlab.lab.config import Limits, parse_bounded_yaml

    hint = "give the secrets file `generate` (or `from-pulumi`) wrote"
    try:
        with open(path, "rb") as f:
            raw = f.read(MAX_FILE_BYTES + 1)
    except OSError as e:
        raise SecretsError(f"cannot read {path}: {e.strerror}; {hint}") from e
    if len(raw) > MAX_FILE_BYTES:
        raise SecretsError(f"{path} is larger than {MAX_FILE_BYTES} bytes: not a secrets file; {hint}")
    try:
        # No line of it is ever quoted back: it holds secrets.
        data = parse_bounded_yaml(raw.decode("utf-8"), Limits(max_bytes=MAX_FILE_BYTES, max_nodes=10_000))
    except UnicodeDecodeError:
        raise SecretsError(f"{path} is not UTF-8 text; {hint}") from None
    except (yaml.YAMLError, ValueError):
        raise SecretsError(f"{path} is not a plain YAML mapping within bounds; {hint}") from None
    if not isinstance(data, dict):
        raise SecretsError(f"{path} holds no mapping; give the secrets file `generate` wrote")
    return check(data, str(path), may_lack)


def log_needles(values: dict) -> list[tuple[str, str]]:
    """(name, text) pairs a log scan or a test report's redaction looks for: each secret value whole, the Fernet
    keys a rotation kept one by one, and of the lab CA bundle only its private key's lines (lab_ca.key_lines).

    No text is empty or holds a newline: each is one exact pattern for `grep -F -f`, where a blank line (the one
    between a PEM bundle and the next value) would match every line of every file.
    """
    out: set[tuple[str, str]] = set()
    for name, value in values.items():
        if name == LAB_CA and isinstance(value, str):
            out.update((name, line) for line in lab_ca.key_lines(value))
            continue
        for one in value if isinstance(value, list) else [value]:
            out.update((name, line.strip()) for line in str(one).splitlines() if line.strip())
    return sorted(out)


def rotate(values: dict, name: str) -> dict:
    """A new value for `name`; a replaced Fernet key stays readable (first in the previous keys)."""
    if name not in SERVICE_SECRETS:
        raise SecretsError(f"no secret named {name}; rotate one of: {', '.join(SERVICE_SECRETS)}")
    out = {**values, name: make_value(SERVICE_SECRETS[name])}
    if name == FERNET_KEY and values.get(FERNET_KEY):  # none yet: nothing was encrypted with one
        out[PREVIOUS_FERNET_KEYS] = [values[FERNET_KEY], *values.get(PREVIOUS_FERNET_KEYS, [])]
    return out


def keep_replaced_fernet_key(new: dict, old: dict) -> dict:
    """`new` with the Fernet key of `old` kept as a previous key when they differ (a replaced secret in Pulumi)."""
    if not old or old.get(FERNET_KEY) in (None, new[FERNET_KEY]):
        return new
    kept = [old[FERNET_KEY], *old.get(PREVIOUS_FERNET_KEYS, []), *new.get(PREVIOUS_FERNET_KEYS, [])]
    return {
        **new,
        PREVIOUS_FERNET_KEYS: [k for i, k in enumerate(kept) if k not in kept[:i] and k != new[FERNET_KEY]],
    }


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


def write_private(path: Path, text: str) -> None:
    """A secret as a text file: 0600 from the first byte, its missing folders 0700 (the workstation backup's
    repository password)."""
    _private_folders(path.absolute().parent)
    atomic.write_text(path, text, mode=0o600)


@cli.command("host_secrets")
def main(argv: list[str] | None = None) -> int:
    parser = cli.Parser(
        prog="python -m renderlab.lab.host_secrets",
        description="Write the hosts' service secrets to a 0600 vars file, and rotate them.",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    gen = sub.add_parser("generate", help="fresh random secrets (local lab)")
    gen.add_argument("-o", "--output", required=True)
    pul = sub.add_parser("from-pulumi", help=f"the stack output {PULUMI_OUTPUT} (real lab)")
    pul.add_argument("-o", "--output", required=True)
    pul.add_argument("--stack")
    rot = sub.add_parser("rotate", help="a new value for one secret (then run site.yml)")
    rot.add_argument("name", choices=sorted(SERVICE_SECRETS))
    rot.add_argument("-f", "--file", required=True)
    ret = sub.add_parser("retire-fernet", help="drop the previous Fernet keys (after site.yml re-encrypted)")
    ret.add_argument("-f", "--file", required=True)
    args = parser.parse_args(argv)
    path = Path(getattr(args, "output", None) or args.file)
    if args.command == "generate":
        values = generate()
    elif args.command == "from-pulumi":
        values = from_pulumi(args.stack)
        if path.exists():  # a Fernet key Pulumi replaced stays readable until retired
            values = keep_replaced_fernet_key(values, read(path))
    elif args.command == "rotate":
        values = rotate(read(path, may_lack=args.name), args.name)
    else:
        values = {k: v for k, v in read(path).items() if k != PREVIOUS_FERNET_KEYS}
    try:
        write(path, values)
    except OSError as e:
        raise CommandError(f"cannot write {path}: {e.strerror or e}; pick a writable path") from None
    kept = len(values.get(PREVIOUS_FERNET_KEYS, []))
    print(
        f"{path}: {len(values)} secrets written (mode 0600)"
        + (f"; {kept} previous Fernet key(s) kept" if kept else "")
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
