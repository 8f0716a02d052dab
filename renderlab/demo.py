"""`make demo`: the local embedded default — the render DAG in real Airflow on this machine.

See renderlab/local_demo.py; `python -m renderlab.demo --help` lists the knobs (song, frames, samples).
"""

from __future__ import annotations

import sys


def main(argv: list[str] | None = None) -> int:
    from renderlab.local_demo import run

    try:
        return run(argv)
    except SystemExit as e:  # the demo's own refusals are `SystemExit("demo: ...")`: one line, status 1
        if isinstance(e.code, str):
            print(e.code if e.code.startswith("demo: error:") else e.code.replace("demo: ", "demo: error: ", 1),
                  file=sys.stderr)  # fmt: skip
            return 1
        raise


if __name__ == "__main__":
    from renderlab import cli

    sys.exit(cli.guard("demo", main))
