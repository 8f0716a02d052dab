"""`make demo`: the local embedded default — the render DAG in real Airflow on this machine.

See renderlab/local_demo.py; `python -m renderlab.demo --help` lists the knobs (song, frames, samples).
"""

from __future__ import annotations

import sys


def main(argv: list[str] | None = None) -> int:
    from renderlab.local_demo import run

    return run(argv)


if __name__ == "__main__":
    sys.exit(main())
