"""`python -m renderlab.workstation.nspawn_lab up|down|status` (what `make lab-local` / `make lab-local-down` run)."""

from __future__ import annotations

import json
import sys

from renderlab.base import cli
from renderlab.lab.config import ConfigError
from renderlab.workstation.nspawn_lab import lab
from renderlab.workstation.nspawn_lab.options import LabError, LabOptions


def main(argv: list[str] | None = None) -> int:
    parser = cli.Parser(prog="python -m renderlab.workstation.nspawn_lab", description=__doc__)
    parser.add_argument("command", choices=["up", "down", "status"])
    args = parser.parse_args(argv)
    try:
        s = LabOptions.from_env()
        if args.command == "up":
            up = lab.up(s)
            print(f"inventory: {up.inventory}\nsecrets:   {up.secrets}\nstop it:   make lab-local-down")
        elif args.command == "down":
            lab.down(s)
        else:
            print(json.dumps(lab.status(s), indent=1) or "{}")
    except (LabError, ConfigError) as e:
        print(f"lab: error: {cli.one_line(e)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(cli.guard("lab", main))
