"""Shared entrypoint plumbing: argv under `python -m` and under `blender -b --python X.py -- args`,
one clear error line and a non-zero exit, and the one JSON result line printed last."""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable

from blender_scripts.errors import ContentError


def argv() -> list[str]:
    args = sys.argv[1:]
    if "--" in sys.argv:  # under the Blender binary everything before "--" belongs to Blender
        args = sys.argv[sys.argv.index("--") + 1 :]
    return args


def under_blender_binary() -> bool:
    import bpy

    return bool(getattr(bpy.app, "binary_path", "")) and not sys.argv[0].endswith(("python", "python3"))


def run(name: str, main: Callable[[list[str]], dict]) -> None:
    try:
        result = main(argv())
    except ContentError as exc:
        print(f"{name}: error: {exc}", file=sys.stderr, flush=True)
        code = 2
    except KeyboardInterrupt:
        print(f"{name}: interrupted", file=sys.stderr, flush=True)
        code = 130
    else:
        sys.stdout.flush()
        print(json.dumps(result, sort_keys=True), flush=True)
        code = 0
    if under_blender_binary():
        os._exit(code)  # skip Blender's own exit chatter so the JSON line stays last
    sys.exit(code)


def progress(message: str) -> None:
    print(message, file=sys.stderr, flush=True)
