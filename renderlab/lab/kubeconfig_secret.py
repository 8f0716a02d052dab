"""make lab's cluster stage, first half: the admin kubeconfig the hosts stage fetched (kubeadm's admin.conf)
becomes the stack's secret `renderlab:kubeconfig`, which turns the Pulumi program's cluster layer on.

Set only when the stack does not already hold exactly this kubeconfig: `pulumi config set --secret` encrypts
with a fresh nonce each time, so setting it on every run would rewrite the stack file for nothing. The file is
read as hostile (it came over SSH from a VM): a regular file reached without a link, private (it is the
cluster's admin credential), at most 1 MiB, a kubeconfig with an https server; its value is handed to Pulumi
on stdin and is never printed.

    python -m renderlab.lab.kubeconfig_secret --stack lab --kubeconfig kubeconfig [--pulumi PATH]
"""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path

import yaml

from renderlab.base import cli
from renderlab.base.errors import CommandError
from renderlab.lab import passphrase
from renderlab.lab.config import parse_bounded_yaml, yaml_problem

KEY = "renderlab:kubeconfig"
MAX_BYTES = 1 << 20


class KubeconfigError(CommandError):
    """The kubeconfig cannot be handed to the stack; the message says why and what to do."""


def read(path: Path) -> str:
    """The kubeconfig's text, checked; KubeconfigError naming the file and the fix otherwise."""
    fetched = "the hosts stage (`make lab-hosts`) fetches it from the control plane"
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except FileNotFoundError:
        raise KubeconfigError(f"{path}: no kubeconfig there; {fetched}") from None
    except OSError as e:
        raise KubeconfigError(
            f"{path}: cannot open it ({e.strerror}); it must be a plain file, no link"
        ) from None
    with os.fdopen(fd, "rb") as fh:
        st = os.fstat(fh.fileno())
        if not stat.S_ISREG(st.st_mode):
            raise KubeconfigError(f"{path} is not a regular file; {fetched}")
        if st.st_mode & 0o077:
            raise KubeconfigError(
                f"{path} is readable by others (mode {stat.S_IMODE(st.st_mode):04o}); it is the cluster's "
                f"admin credential: `chmod 600 {path}`"
            )
        raw = fh.read(MAX_BYTES + 1)
    if len(raw) > MAX_BYTES:
        raise KubeconfigError(f"{path} is over {MAX_BYTES} bytes: not kubeadm's admin.conf; {fetched}")
    try:
        text = raw.decode()
        doc = parse_bounded_yaml(text)  # no alias bomb expands here
    except yaml.YAMLError as e:  # its line is not shown: it may hold the client key
        raise KubeconfigError(f"{path} is not a kubeconfig ({yaml_problem(e)}); {fetched}") from None
    except (UnicodeDecodeError, ValueError) as e:
        raise KubeconfigError(f"{path} is not a kubeconfig ({cli.one_line(e)[:200]}); {fetched}") from None
    _check(path, doc, fetched)
    return text


def _check(path: Path, doc: object, fetched: str) -> None:
    def bad(what: str) -> KubeconfigError:
        return KubeconfigError(f"{path} is not a kubeconfig ({what}); {fetched}")

    if not isinstance(doc, dict) or doc.get("kind") != "Config":
        raise bad("no `kind: Config` mapping")
    for section in ("clusters", "users", "contexts"):
        if not isinstance(doc.get(section), list) or not doc[section]:
            raise bad(f"no {section}")
    for entry in doc["clusters"]:
        server = entry.get("cluster", {}).get("server") if isinstance(entry, dict) else None
        if not isinstance(server, str) or not server.startswith("https://"):
            raise bad("a cluster without an https:// server")
    if not isinstance(doc.get("current-context"), str) or not doc["current-context"]:
        raise bad("no current-context")


def _pulumi(cmd: list[str], stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    try:
        env = passphrase.pulumi_env()
    except passphrase.PassphraseError as e:
        raise KubeconfigError(str(e)) from None
    env["PULUMI_SKIP_UPDATE_CHECK"] = "true"  # as the Makefile's Pulumi runs: no call out for a version check
    try:
        return subprocess.run(
            cmd,
            input=stdin,
            stdin=subprocess.DEVNULL if stdin is None else None,
            capture_output=True,
            text=True,
            env=env,
            check=False,
        )
    except FileNotFoundError:
        raise KubeconfigError(f"no Pulumi CLI at {cmd[0]}: run `make tools` or put pulumi on PATH") from None


def hand_over(path: Path, stack: str, pulumi: str = "pulumi") -> bool:
    """Set the stack's secret to the kubeconfig when it differs; True when it was set."""
    text = read(path)
    got = _pulumi([pulumi, "config", "get", KEY, "--stack", stack])
    # `config get` of a key not set exits non-zero; any other failure shows up again in `config set`.
    if got.returncode == 0 and got.stdout.rstrip("\n") == text.rstrip("\n"):
        return False
    put = _pulumi([pulumi, "config", "set", "--secret", KEY, "--stack", stack], stdin=text)
    if put.returncode != 0:
        # Pulumi's stderr never holds the value (it came on stdin).
        raise KubeconfigError(
            f"`pulumi config set --secret {KEY} --stack {stack}` failed: {put.stderr.strip()}"
        )
    return True


@cli.command("kubeconfig_secret")
def main(argv: list[str] | None = None) -> int:
    parser = cli.Parser(prog="python -m renderlab.lab.kubeconfig_secret", description=__doc__.split("\n")[0])
    parser.add_argument("--stack", default=os.environ.get("STACK", "lab"))
    parser.add_argument("--kubeconfig", type=Path, required=True, help="the file the hosts stage fetched")
    parser.add_argument("--pulumi", default="pulumi", help="the Pulumi CLI")
    args = parser.parse_args(argv)
    if hand_over(args.kubeconfig, args.stack, args.pulumi):
        print(f"cluster: {KEY} of stack {args.stack} set from {args.kubeconfig} (secret)")
    else:
        print(f"cluster: {KEY} of stack {args.stack} already holds {args.kubeconfig}: unchanged")
    return 0


if __name__ == "__main__":
    sys.exit(main())
