"""Shared entrypoint plumbing: argv under `python -m` and under `blender -b --python X.py -- args`,
one clear error line and a non-zero exit, and the one JSON result line printed last.

Exit status of every blender_scripts entrypoint: 0 done, 2 bad input or impossible request, 3 the output
folder cannot be written (read-only, full, not a folder), 70 internal error (a bug), 130 interrupted.
Every failure is one line on stderr, never a traceback.
"""

from __future__ import annotations

import errno
import json
import os
import sys
from collections.abc import Callable

from blender_scripts.errors import ContentError, OutputError

EXIT_INTERNAL = 70


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
        print(f"{name}: error: {_one_line(str(exc))}", file=sys.stderr, flush=True)
        code = exc.exit_code
    except OSError as exc:  # an output write the entrypoint did not wrap itself
        err = output_error(exc, exc.filename or "the output folder", "write")
        print(f"{name}: error: {err}", file=sys.stderr, flush=True)
        code = err.exit_code
    except MemoryError:
        print(f"{name}: error: out of memory; give the Job more memory or a shorter song", file=sys.stderr)
        code = EXIT_INTERNAL
    except Exception as exc:  # never a traceback: one line naming the error, and a distinct status
        print(
            f"{name}: error: internal error {type(exc).__name__}: {_one_line(str(exc))} (a bug; please "
            "report it with the input files)",
            file=sys.stderr,
            flush=True,
        )
        code = EXIT_INTERNAL
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


def _one_line(text: str) -> str:
    return " / ".join(line.strip() for line in text.splitlines() if line.strip())


def output_error(exc: OSError, path: object, doing: str) -> OutputError:
    """One message for an OSError on the output side: what, where, and the fix."""
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        hint = "the disk is full; free space or pick another --out"
    elif exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        hint = "it is not writable; pick a writable --out or fix its permissions"
    elif exc.errno in (errno.ENOTDIR, errno.EEXIST):
        hint = "a file stands where a folder is needed; pick another --out"
    elif exc.errno == errno.ENOENT:
        hint = "a folder on the way does not exist and cannot be made there; pick another --out"
    else:
        hint = "pick another --out"
    return OutputError(f"cannot {doing} {path}: {exc.strerror or exc} ({hint})")


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # someone else's live process
    return True


def progress(message: str) -> None:
    print(message, file=sys.stderr, flush=True)
