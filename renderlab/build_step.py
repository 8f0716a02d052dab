"""The build Job: `python -m renderlab.build_step --project assets/<song> --out runs/<id>/scene --fps 60`.

Picks the project's files the way the depot lays them out (``song.mid``, and ``arrangement.yaml`` when the
project has one) inside the Job, where the share is, then runs ``blender_scripts.build`` with them; its
output and its JSON result line are the Job's.
"""

from __future__ import annotations

import argparse
import runpy
import sys
from pathlib import Path

MIDI = "song.mid"
ARRANGEMENT = "arrangement.yaml"


def build_argv(project: Path, out: Path, fps: int) -> list[str]:
    midi = project / MIDI
    if not midi.is_file():
        raise FileNotFoundError(
            f"{midi} does not exist; a song project needs {MIDI} at its top (did the fetch step run?)"
        )
    argv = ["--midi", str(midi), "--out", str(out), "--fps", str(fps)]
    if (project / ARRANGEMENT).is_file():
        argv += ["--arrangement", str(project / ARRANGEMENT)]
    return argv


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m renderlab.build_step", description=__doc__.split("\n")[0])
    ap.add_argument("--project", type=Path, required=True)
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--fps", type=int, required=True)
    a = ap.parse_args(argv)
    try:
        args = build_argv(a.project, a.out, a.fps)
    except FileNotFoundError as e:
        print(f"build: error: {e}", file=sys.stderr)
        return 2
    sys.argv = ["blender_scripts.build", *args]
    runpy.run_module("blender_scripts.build", run_name="__main__", alter_sys=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
