"""`make lab`: every stage of building the lab, in order, each one a make target that also runs alone.

A stage that finished leaves a stamp keyed by its inputs (the files it reads, hashed) and by the key of the
stage before it; `make lab` skips a stage whose stamp matches, so a second run does nothing, a run after a
failure resumes at the stage that failed, and a changed input reruns its stage and every one after it.
Each stage is itself idempotent (pulumi up of an unchanged stack, site.yml with changed=0), so a stamp
lost costs a rerun, never a wrong lab.

    python -m renderlab.lab.stages run [--stack lab] [--from STAGE] [--to STAGE]   # what `make lab` runs
    python -m renderlab.lab.stages list                               # the stages, in order
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import yaml

from renderlab.base import cli
from renderlab.lab.config import parse_bounded_yaml
from renderlab.lab.kubeconfig_secret import KEY as KUBECONFIG_KEY

REPO = Path(__file__).resolve().parents[2]
STACK_FILE = re.compile(r"Pulumi\.[^/]+\.yaml")


@dataclass(frozen=True)
class Stage:
    name: str
    target: str  # the make target that runs it alone
    what: str
    inputs: tuple[str, ...]  # repo-relative files or folders ({stack} is the stack's name)


STAGES = (
    Stage(
        "prereqs",
        "lab-prereqs",
        "Proxmox, token privileges, tools, SSH key, passphrase",
        ("Pulumi.{stack}.yaml",),
    ),
    Stage("vms", "lab-up", "template and VMs (pulumi up)", ("Pulumi.{stack}.yaml", "infra")),
    Stage("inventory", "lab-inventory", "the Ansible inventory from the stack", ("Pulumi.{stack}.yaml",)),
    Stage("secrets", "lab-secrets", "the generated service secrets, 0600", ("Pulumi.{stack}.yaml",)),
    Stage("known-hosts", "lab-known-hosts", "the VMs' SSH host keys", ("Pulumi.{stack}.yaml",)),
    Stage(
        "hosts", "lab-hosts", "site.yml on every VM", ("ansible", "Pulumi.{stack}.yaml", "dags", "renderlab")
    ),
    # The kubeconfig the hosts stage fetched, as the stack's secret; then `pulumi up` lays the cluster layer.
    Stage(
        "cluster",
        "lab-cluster",
        "the kubeconfig as the stack's secret, the cluster layer (pulumi up)",
        ("infra", "Pulumi.{stack}.yaml", "kubeconfig"),
    ),
    Stage(
        "images",
        "lab-images",
        "fetch, Blender and docs images, pushed and recorded",
        ("images", "blender_scripts", "docs", "Pulumi.{stack}.yaml"),
    ),
    # The recorded references reach the docs Deployment (pulumi up) and the DAG (the inventory, then Airflow).
    Stage(
        "rollout",
        "lab-rollout",
        "the pushed images into the docs Deployment and the inventory",
        ("infra", "Pulumi.{stack}.yaml", ".cache/images/Pulumi.{stack}.json"),
    ),
    Stage(
        "airflow",
        "lab-airflow-connection",
        "Airflow's settings with the images, its cluster connection",
        ("Pulumi.{stack}.yaml",),
    ),
    Stage(
        "depot",
        "lab-depot",
        "the depot seeded with the bundled songs",
        ("depot/songs", "ansible/roles/perforce"),
    ),
)


def _stack_file_bytes(path: Path) -> bytes:
    """The stack file less the kubeconfig secret: the cluster stage sets that key (an output of a later stage,
    not an input of the earlier ones), and setting it must not make the next `make lab` redo the VMs."""
    data = path.read_bytes()
    try:
        doc = parse_bounded_yaml(data.decode())  # a stack file may be hostile: no alias bomb expands here
    except (UnicodeDecodeError, ValueError, yaml.YAMLError):
        return data  # check_config, in the first stage, says what is wrong with it
    if not isinstance(doc, dict) or not isinstance(doc.get("config"), dict):
        return data
    doc["config"] = {k: v for k, v in doc["config"].items() if k != KUBECONFIG_KEY}
    return json.dumps(doc, sort_keys=True, default=str).encode()


def _folder_files(path: Path) -> list[Path]:
    """A folder input's files as git sees them (tracked or new, not ignored): what a stage writes into its own
    inputs (the generated inventory under ansible/, caches) must not make the next run redo it. Outside a git
    checkout, every file."""
    got = subprocess.run(
        ["git", "-C", str(path), "ls-files", "-z", "-co", "--exclude-standard", "--", "."],
        capture_output=True,
        check=False,
    )
    if got.returncode != 0:
        return sorted(p for p in path.rglob("*") if p.is_file() and "__pycache__" not in p.parts)
    return sorted(f for f in (path / name for name in got.stdout.decode().split("\0") if name) if f.is_file())


def _hash_path(h: hashlib._Hash, path: Path) -> None:
    if path.is_dir():
        for f in _folder_files(path):
            _hash_path(h, f)
    elif path.is_file():
        data = _stack_file_bytes(path) if STACK_FILE.fullmatch(path.name) else path.read_bytes()
        h.update(str(path).encode() + b"\0" + data + b"\0")
    else:
        h.update(str(path).encode() + b"\0missing\0")


def stage_key(stage: Stage, stack: str, before: str, root: Path = REPO) -> str:
    h = hashlib.sha256(f"{stage.name}\0{stage.target}\0{stack}\0{before}\0".encode())
    for name in stage.inputs:
        _hash_path(h, root / name.format(stack=stack))
    return h.hexdigest()


def stamp_dir(stack: str, root: Path = REPO) -> Path:
    return root / ".cache" / "lab-stages" / stack


def run(
    stack: str,
    start: str | None,
    make: list[str],
    root: Path = REPO,
    out=sys.stdout,
    *,
    stop: str | None = None,
) -> int:
    """The stages in order, from the first not done (or `start`) through `stop` (default: the last)."""
    names = [s.name for s in STAGES]
    for option, name in (("--from", start), ("--to", stop)):
        if name is not None and name not in names:
            print(
                f"lab: error: {option} {name!r}: no such stage; the stages are {', '.join(names)}",
                file=sys.stderr,
            )
            return 2
    if start is not None and stop is not None and names.index(stop) < names.index(start):
        print(f"lab: error: --to {stop} comes before --from {start}", file=sys.stderr)
        return 2
    last = names.index(stop) + 1 if stop is not None else len(STAGES)
    stamps = stamp_dir(stack, root)
    stamps.mkdir(parents=True, exist_ok=True)
    key = ""
    forced = False  # from --from's stage on, every stage runs, done or not
    for i, stage in enumerate(STAGES[:last], 1):
        key = stage_key(stage, stack, key, root)
        forced = forced or stage.name == start
        where = f"lab [{i}/{len(STAGES)}] {stage.name} ({stage.what})"
        stamp = stamps / f"{stage.name}.stamp"
        if not forced and stamp.is_file() and stamp.read_text() == key:
            print(f"{where}: done (inputs unchanged)", file=out, flush=True)
            continue
        print(f"{where}: make {stage.target}", file=out, flush=True)
        stamp.unlink(missing_ok=True)
        # YES=1: unattended, `pulumi up` applies its preview without asking (the Makefile's PULUMI_UP_ARGS).
        t0 = time.monotonic()
        result = subprocess.run([*make, stage.target, f"STACK={stack}", "YES=1"], cwd=root, check=False)
        took = f"{time.monotonic() - t0:.0f} s"
        if result.returncode != 0:
            print(
                f"{where}: failed (exit {result.returncode}) after {took}; fix it and run `make lab` again: it "
                f"resumes here (or alone: `make {stage.target} STACK={stack}`)",
                file=out,
                flush=True,
            )
            return 1
        stamp.write_text(key)
        print(f"{where}: done in {took}", file=out, flush=True)
    if last < len(STAGES):
        print(f"lab: stages 1-{last} of {len(STAGES)} done for stack {stack} (through {stop})", file=out)
    else:
        print(f"lab: all {len(STAGES)} stages done for stack {stack}", file=out)
    return 0


@cli.command("lab")
def main(argv: list[str] | None = None) -> int:
    parser = cli.Parser(prog="python -m renderlab.lab.stages", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    r = sub.add_parser("run", help="run the stages in order, skipping those done")
    r.add_argument("--stack", default=os.environ.get("STACK", "lab"))
    r.add_argument("--from", dest="start", help="rerun this stage and every one after it, even if done")
    r.add_argument("--to", dest="stop", help="stop after this stage")
    r.add_argument("--make", default=os.environ.get("MAKE", "make"), help="the make program")
    r.add_argument("--makefile", help="another Makefile (tests)")
    sub.add_parser("list", help="the stages, in order")
    args = parser.parse_args(argv)
    if args.command == "list":
        for i, s in enumerate(STAGES, 1):
            print(f"{i:2}. {s.name:<19} make {s.target:<24} {s.what}")
        return 0
    make = [args.make, "--no-print-directory"] + (["-f", args.makefile] if args.makefile else [])
    return run(args.stack, args.start, make, stop=args.stop)


if __name__ == "__main__":
    sys.exit(main())
