"""`python -m renderlab.workstation.nspawn_lab up|down|status` (what `make lab-local` / `make lab-local-down` run)."""

from __future__ import annotations

import json
import sys

from renderlab.base import cli
from renderlab.workstation.nspawn_lab import lifecycle
from renderlab.workstation.nspawn_lab.options import LabOptions


@cli.command("lab")
def main(argv: list[str] | None = None) -> int:
    parser = cli.Parser(prog="python -m renderlab.workstation.nspawn_lab", description=__doc__)
    parser.add_argument("command", choices=["up", "down", "status"])
    args = parser.parse_args(argv)
    s = LabOptions.from_env()
    if args.command == "up":
        up = lifecycle.up(s)
        print(f"inventory: {up.inventory}\nsecrets:   {up.secrets}\nstop it:   make lab-local-down")
    elif args.command == "down":
        lifecycle.down(s)
    else:
        print(json.dumps(lifecycle.status(s), indent=1) or "{}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
