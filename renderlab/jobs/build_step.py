"""The build Job: `python -m renderlab.jobs.build_step --project assets/<song> --out runs/<id>/scene --fps 60`.

Picks the project's files the way the depot lays them out (``song.mid``, and ``arrangement.yaml`` when the
project has one) inside the Job, where the share is, then runs ``blender_scripts.build`` with them; its
output and its JSON result line are the Job's. A re-run whose inputs (file digests, fps) match the last
complete build in --out prints that build's result again and rebuilds nothing.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import runpy
import sys
from pathlib import Path

from renderlab.base import atomic, cli

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


STAMP = ".build-inputs.json"


def inputs_digest(argv: list[str]) -> str:
    h = hashlib.sha256(json.dumps([a for a in argv if not Path(a).is_file()]).encode())
    for a in argv:
        if Path(a).is_file():
            h.update(Path(a).read_bytes())
    return h.hexdigest()


def previous_result(out: Path, digest: str) -> dict | None:
    """The last build's result if it was made from these inputs and all its files are still there."""
    try:
        stamp = json.loads((out / STAMP).read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return None
    result = stamp.get("result") or {}
    files = [v for k, v in result.items() if k in ("blend", "loop_blend", "wav", "loop_wav", "report")]
    if stamp.get("inputs") != digest or not files or not all(Path(f).is_file() for f in files):
        return None
    return result


def build_parser() -> cli.Parser:
    ap = cli.Parser(prog="python -m renderlab.jobs.build_step", description=__doc__.split("\n")[0])
    ap.add_argument("--project", type=Path, required=True)
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--fps", type=int, required=True)
    return ap


def main(argv: list[str] | None = None) -> int:
    a = build_parser().parse_args(argv)
    try:
        args = build_argv(a.project, a.out, a.fps)
    except FileNotFoundError as e:
        print(f"build: error: {e}", file=sys.stderr)
        return 2
    digest = inputs_digest(args)
    done = previous_result(a.out, digest)
    if done is not None:
        print(f"build: {a.out} is up to date with these inputs; nothing rebuilt", file=sys.stderr)
        print(json.dumps(done, sort_keys=True))
        return 0
    # Run the build in-process; argv[0] "python" keeps blender_scripts' CLI returning (SystemExit) rather
    # than ending the process, so the inputs can be stamped after a success.
    sys.argv = ["python", *args]
    code = 0
    try:
        runpy.run_module("blender_scripts.build", run_name="__main__", alter_sys=True)
    except SystemExit as e:
        code = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
    except ModuleNotFoundError as e:  # a broken image or venv: say which module, not a traceback
        print(
            f"build: error: Python module {e.name!r} is missing from {sys.executable}'s environment; "
            "rebuild the Blender image (`make images`) or reinstall the lock (`make venv`)",
            file=sys.stderr,
        )
        return 3
    if code == 0:
        with contextlib.suppress(OSError, KeyError, json.JSONDecodeError):
            result = json.loads((a.out / "report.json").read_text(encoding="utf-8"))["outputs"]
            atomic.write_json(a.out / STAMP, {"inputs": digest, "result": result})
    return code


if __name__ == "__main__":
    sys.exit(cli.guard("build", main))
