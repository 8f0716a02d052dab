"""Check a lab stack file without touching anything: `python -m renderlab.lab.check_config FILE`.

Exit status: 0 valid, 1 the file has problems (each named with its key path; one problem is one line),
2 bad arguments, 70 internal error (a bug; one line, never a traceback). The --max-yaml-* flags raise the
bounds on the YAML itself (renderlab.lab.config.Limits).
"""

from __future__ import annotations

import argparse
import sys

from renderlab.base import cli
from renderlab.lab.config import ConfigError, Limits, lab_warnings, load


def _bound(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{value} is not a positive number")
    return value


def main(argv: list[str] | None = None) -> int:
    parser = cli.Parser(prog="python -m renderlab.lab.check_config", description=__doc__.split("\n")[0])
    parser.add_argument("stack_file", help="a Pulumi.<stack>.yaml file (e.g. Pulumi.example.yaml)")
    d = Limits()
    parser.add_argument("--max-yaml-bytes", type=_bound, default=d.max_bytes, help=f"default {d.max_bytes}")
    parser.add_argument(
        "--max-yaml-nodes",
        type=_bound,
        default=d.max_nodes,
        help=f"after alias expansion; default {d.max_nodes}",
    )
    parser.add_argument("--max-yaml-depth", type=_bound, default=d.max_depth, help=f"default {d.max_depth}")
    args = parser.parse_args(argv)
    limits = Limits(args.max_yaml_bytes, args.max_yaml_nodes, args.max_yaml_depth)
    try:
        config = load(args.stack_file, limits)
    except ConfigError as e:
        print(f"check_config: error: {e}", file=sys.stderr)
        return 1
    for warning in lab_warnings(config):
        print(f"check_config: warning: {warning}", file=sys.stderr)
    hosts = ", ".join(f"{name} ({h.role}) {config.address(name)}" for name, h in config.hosts.items())
    print(f"{args.stack_file}: OK — {len(config.hosts)} hosts: {hosts}")
    return 0


if __name__ == "__main__":
    sys.exit(cli.guard("check_config", main))
