"""The Pulumi passphrase of the lab's stack, kept in a file instead of typed at every prompt.

The stack's state plus this passphrase hold every generated service password (SMB, Perforce, Airflow, the
cluster join token) and the Proxmox API token: back both up, together, somewhere only you can read. Pulumi
reads the file itself through PULUMI_CONFIG_PASSPHRASE_FILE; every `make lab-*` target and
`host_secrets from-pulumi` set that variable from here, so nothing ever prompts (a prompt inside a captured
`pulumi stack output` is a hang or a failure with no hint).

Where it comes from, first match wins:
  1. PULUMI_CONFIG_PASSPHRASE (set by you: used as is, no file);
  2. PULUMI_CONFIG_PASSPHRASE_FILE (set by you: must exist and be readable by you alone);
  3. ~/.renderlab/pulumi-passphrase ($RENDERLAB_HOME moves ~/.renderlab), created 0600 with 256 random bits
     by the first `ensure` (the first `make lab-vms`) if it is not there.

    python -m renderlab.lab.passphrase ensure   # prints the file's path (creating it if needed)
    python -m renderlab.lab.passphrase check    # one line: where the passphrase comes from, or what to do
"""

from __future__ import annotations

import os
import secrets
import stat
import sys
from collections.abc import Mapping
from pathlib import Path

from renderlab.base import cli

ENV = "PULUMI_CONFIG_PASSPHRASE"
FILE_ENV = "PULUMI_CONFIG_PASSPHRASE_FILE"


class PassphraseError(Exception):
    """No usable passphrase; the message says what to do."""


def home(env: Mapping[str, str] = os.environ) -> Path:
    return Path(env.get("RENDERLAB_HOME") or Path(env.get("HOME", "~")).expanduser() / ".renderlab")


def default_file(env: Mapping[str, str] = os.environ) -> Path:
    return home(env) / "pulumi-passphrase"


def _private(path: Path) -> None:
    mode = path.stat().st_mode
    if not stat.S_ISREG(mode):
        raise PassphraseError(f"{path} is not a regular file; point {FILE_ENV} at the passphrase file")
    if mode & 0o077:
        raise PassphraseError(
            f"{path} is readable by others (mode {stat.S_IMODE(mode):04o}); it unlocks every lab secret: "
            f"`chmod 600 {path}`"
        )
    if not path.read_text().strip():
        raise PassphraseError(f"{path} is empty; write the stack's passphrase into it (one line)")


def source(env: Mapping[str, str] = os.environ) -> str:
    """Where the passphrase comes from (one line), or PassphraseError with what to do."""
    if env.get(ENV):
        return f"passphrase from {ENV}"
    given = env.get(FILE_ENV)
    path = Path(given) if given else default_file(env)
    if not path.exists():
        if given:
            raise PassphraseError(f"{FILE_ENV}={given}: no such file; create it (0600) or unset {FILE_ENV}")
        raise PassphraseError(
            f"no Pulumi passphrase: {path} does not exist and neither {ENV} nor {FILE_ENV} is set; "
            "`make lab-vms` creates the file on the first run (or export "
            f"{FILE_ENV}=<your passphrase file> if you made the stack with a typed passphrase)"
        )
    _private(path)
    return f"passphrase file {path}"


def ensure(env: Mapping[str, str] = os.environ) -> Path | None:
    """The passphrase file Pulumi should read (created 0600 if it is the default and missing); None when
    PULUMI_CONFIG_PASSPHRASE is set (Pulumi uses that)."""
    if env.get(ENV):
        return None
    given = env.get(FILE_ENV)
    path = Path(given) if given else default_file(env)
    if not given and not path.exists():
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)  # private from the first byte
        except FileExistsError:
            pass  # another run made it first: use theirs
        else:
            with os.fdopen(fd, "w") as fh:
                fh.write(secrets.token_urlsafe(32) + "\n")
    source(env)  # exists, private, not empty
    return path


def pulumi_env(env: Mapping[str, str] = os.environ) -> dict[str, str]:
    """`env` plus what Pulumi needs to find the passphrase without prompting (nothing is created)."""
    source(env)
    out = dict(env)
    if not env.get(ENV) and not env.get(FILE_ENV):
        out[FILE_ENV] = str(default_file(env))
    return out


def main(argv: list[str] | None = None) -> int:
    parser = cli.Parser(prog="python -m renderlab.lab.passphrase", description=__doc__.split("\n")[0])
    parser.add_argument("command", choices=["ensure", "check"])
    args = parser.parse_args(argv)
    try:
        if args.command == "ensure":
            path = ensure()
            print(path if path is not None else "")
        else:
            print(source())
    except PassphraseError as e:
        print(f"passphrase: error: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(cli.guard("passphrase", main))
