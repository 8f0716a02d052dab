"""Check a lab stack file without touching anything: `python -m renderlab.lab.check_config FILE`."""

from __future__ import annotations

import argparse
import sys

from renderlab.lab.config import ConfigError, load


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("stack_file", help="a Pulumi.<stack>.yaml file (e.g. Pulumi.example.yaml)")
    args = parser.parse_args(argv)
    try:
        config = load(args.stack_file)
    except ConfigError as e:
        print(e, file=sys.stderr)
        return 1
    hosts = ", ".join(f"{name} ({h.role}) {config.address(name)}" for name, h in config.hosts.items())
    print(f"{args.stack_file}: OK — {len(config.hosts)} hosts: {hosts}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
