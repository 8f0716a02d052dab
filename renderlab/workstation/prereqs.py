"""`make lab`'s first stage: what the build needs, one line each, before anything is touched.

Proxmox VE version (8.4+: the template imports with import-from) and the API token's privileges on `/`,
Python, a Pulumi CLI (or Go >= 1.26 to build one), the private half of an SSH key in the stack file, and
where the Pulumi passphrase comes from. Exit 1 if any line says FAIL.

    python -m renderlab.workstation.prereqs Pulumi.lab.yaml [--stack lab]
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

from renderlab.base import cli
from renderlab.lab import passphrase

REPO = Path(__file__).resolve().parents[2]
MIN_PVE = (8, 4)
MIN_GO = (1, 26)

Check = tuple[bool, str]


def check_proxmox(config, token: str, timing=None) -> list[Check]:
    """PVE's version and the token's privileges on / (what the VM and template providers need)."""
    from infra.proxmox.client import Connection, ProxmoxError, Pve
    from infra.proxmox.privileges import PRIVILEGES

    px = config.proxmox
    try:
        pve = Pve(Connection(px.endpoint, px.token_id, px.verify_tls, px.ca_file), token, timing)
        version = str(pve.get("version").get("version", ""))
        # (Pve.get takes the API path as `path`: the query parameter of the same name goes to proxmoxer.)
        held = pve.api("access/permissions").get(path="/").get("/", {}) or {}
    except (ProxmoxError, Exception) as e:  # noqa: BLE001 - any failure is this line's answer
        return [(False, f"proxmox: {px.endpoint} with token {px.token_id}: {e}")]
    found = re.match(r"(\d+)\.(\d+)", version)
    have = (int(found.group(1)), int(found.group(2))) if found else (0, 0)
    lines = [
        (
            have >= MIN_PVE,
            f"proxmox: PVE {version} at {px.endpoint}"
            + ("" if have >= MIN_PVE else f"; needs {MIN_PVE[0]}.{MIN_PVE[1]} or later (import-from)"),
        )
    ]
    missing = sorted(p for p in PRIVILEGES if not held.get(p))
    optional = {"Sys.Modify", "Datastore.AllocateTemplate"} if px.template.adopt else set()
    missing = [p for p in missing if p not in optional]
    lines.append(
        (
            not missing,
            f"proxmox: token {px.token_id} holds the {len(PRIVILEGES)} privileges on /"
            if not missing
            else f"proxmox: token {px.token_id} lacks {', '.join(missing)} on /; grant the role in "
            "docs/building.md (Proxmox prerequisites)",
        )
    )
    return lines


def check_python() -> Check:
    ok = sys.version_info >= (3, 11)
    return ok, f"python: {sys.version.split()[0]}" + ("" if ok else "; needs 3.11 or later")


def _go_version(run: Callable[..., subprocess.CompletedProcess]) -> tuple[int, int] | None:
    if not shutil.which("go"):
        return None
    out = run(["go", "version"], capture_output=True, text=True, check=False).stdout
    found = re.search(r"go(\d+)\.(\d+)", out)
    return (int(found.group(1)), int(found.group(2))) if found else None


def pulumi_cli(run: Callable[..., subprocess.CompletedProcess] | None = None) -> str:
    """The Pulumi CLI the Makefile runs: the one on PATH, else the one `make tools` built; "" if neither."""
    built = (run or subprocess.run)(
        [str(REPO / "scripts" / "build-tools.sh"), "--print-bin"], capture_output=True, text=True, check=False
    ).stdout.strip()
    return shutil.which("pulumi") or (
        f"{built}/pulumi" if built and os.access(f"{built}/pulumi", os.X_OK) else ""
    )


def check_pulumi(run: Callable[..., subprocess.CompletedProcess] = subprocess.run) -> Check:
    cli_path = pulumi_cli(run)
    if cli_path:
        return True, f"pulumi: {cli_path}"
    go = _go_version(run)
    if go and go >= MIN_GO:
        return True, f"pulumi: none yet; Go {go[0]}.{go[1]} builds it (`make tools`, ~10 min)"
    have = f"Go {go[0]}.{go[1]} is too old" if go else "no Go"
    return False, (
        f"pulumi: no CLI on PATH and none built, and {have}: install Pulumi 3.260.0, or Go >= "
        f"{MIN_GO[0]}.{MIN_GO[1]} from go.dev's release archive (Debian 12's golang package is 1.19), then "
        "`make tools`"
    )


def check_ssh_key(config, home: Path | None = None) -> Check:
    """One of ssh.public_keys has its private half here (a key file beside its .pub, or in the agent)."""
    home = home or Path.home()
    wanted = {k.split()[1] for k in config.ssh.public_keys}
    have: set[str] = set()
    for pub in (home / ".ssh").glob("*.pub"):
        parts = pub.read_text().split()
        if len(parts) >= 2 and pub.with_suffix("").is_file():
            have.add(parts[1])
    if shutil.which("ssh-add"):
        agent = subprocess.run(["ssh-add", "-L"], capture_output=True, text=True, check=False).stdout
        have |= {line.split()[1] for line in agent.splitlines() if len(line.split()) >= 2}
    if wanted & have:
        return True, "ssh: a private key for ssh.public_keys is here"
    return False, (
        "ssh: none of ssh.public_keys has its private key in ~/.ssh or the agent; Ansible could not log in "
        "to the VMs: put your own public key (e.g. ~/.ssh/id_ed25519.pub) in the stack file"
    )


def check_passphrase() -> Check:
    try:
        return True, f"pulumi passphrase: {passphrase.source()}"
    except passphrase.PassphraseError:
        if not os.environ.get(passphrase.FILE_ENV):
            return True, f"pulumi passphrase: {passphrase.default_file()} (created 0600 by the VMs stage)"
        raise


def proxmox_token(stack: str) -> str:
    """The token secret: PROXMOX_API_TOKEN, else the stack's Pulumi secret."""
    if os.environ.get("PROXMOX_API_TOKEN"):
        return os.environ["PROXMOX_API_TOKEN"]
    try:
        env = passphrase.pulumi_env()
    except passphrase.PassphraseError:
        return ""
    cli_path = (
        pulumi_cli()
    )  # not only PATH: `make tools` leaves it in its cache (it crashed without one on PATH)
    if not cli_path:
        return ""
    out = subprocess.run(
        [cli_path, "config", "get", "renderlab:proxmox_api_token", "--stack", stack],
        capture_output=True,
        text=True,
        env=env,
        stdin=subprocess.DEVNULL,
        check=False,
    )
    return out.stdout.strip() if out.returncode == 0 else ""


@cli.command("prereqs")
def main(argv: list[str] | None = None) -> int:
    from renderlab.lab.config import ConfigError, load

    parser = cli.Parser(prog="python -m renderlab.workstation.prereqs", description=__doc__.split("\n")[0])
    parser.add_argument("stack_file")
    parser.add_argument("--stack", default="lab")
    args = parser.parse_args(argv)
    try:
        config = load(args.stack_file)
    except ConfigError as e:
        print(f"prereqs: error: {e}", file=sys.stderr)
        return 1
    checks: list[Check] = [(True, f"config: {args.stack_file} is valid")]
    token = proxmox_token(args.stack)
    if token:
        checks += check_proxmox(config, token)
    else:
        checks.append(
            (
                False,
                "proxmox: no token: export PROXMOX_API_TOKEN or `pulumi config set --secret "
                "renderlab:proxmox_api_token <uuid>`",
            )
        )
    try:
        passline = check_passphrase()
    except passphrase.PassphraseError as e:
        passline = (False, f"pulumi passphrase: {e}")
    checks += [check_python(), check_pulumi(), check_ssh_key(config), passline]
    for ok, line in checks:
        print(f"{'ok  ' if ok else 'FAIL'} {line}")
    return 0 if all(ok for ok, _ in checks) else 1


if __name__ == "__main__":
    sys.exit(main())
