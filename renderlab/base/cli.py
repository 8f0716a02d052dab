"""The one CLI kit of the repository: every entry point parses with `Parser` and runs under `guard` (or, for
a Job that prints a JSON result, `run_job`), so each failure is one line on stderr with a documented exit
status, never a Python traceback.

    1   the input or the environment is wrong (a `CommandError`; a subclass may carry another status)
    2   bad arguments (argparse's usage line is folded into the one error line)
    70  internal error: something the command did not foresee -- a bug; the line names the exception
    130 interrupted (Ctrl-C)

A `CommandError` subclass carries its own status (the fetch's 3-7, the content's 2 and 3): each command
documents them. `RENDERLAB_DEBUG=1` lets an unforeseen error through with its traceback, for whoever fixes
the bug.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import signal
import sys
import threading
from collections.abc import Callable
from typing import NoReturn

from renderlab.base.errors import CommandError

EXIT_FAILURE = 1
EXIT_USAGE = 2
EXIT_INTERNAL = 70
EXIT_INTERRUPTED = 130


def one_line(text: object) -> str:
    return " / ".join(line.strip() for line in str(text).splitlines() if line.strip())


def fail(prog: str, message: object) -> None:
    print(f"{prog}: error: {one_line(message)}", file=sys.stderr, flush=True)


def progress(message: str) -> None:
    """A progress line: stderr, so stdout keeps only the result."""
    print(message, file=sys.stderr, flush=True)


class UsageError(CommandError):
    """Bad arguments: exit status 2."""

    exit_code = EXIT_USAGE


class Parser(argparse.ArgumentParser):
    """argparse whose errors raise `UsageError`, so `guard` prints them as one line
    (`COMMAND: error: MESSAGE (see --help)`, usage folded in) with exit status 2."""

    def error(self, message: str):  # type: ignore[override]
        raise UsageError(f"{message} (see --help)")


def argv() -> list[str]:
    """The command's arguments, also under `blender -b --python X.py -- args` (everything before the `--` is
    Blender's own)."""
    if "--" in sys.argv:
        return sys.argv[sys.argv.index("--") + 1 :]
    return sys.argv[1:]


def guard(
    prog: str,
    main: Callable[[], int | None],
    on_oserror: Callable[[OSError], CommandError] | None = None,
) -> int:
    """Run `main`; turn what escapes it into one line and an exit status.

    A `CommandError` (every package's own errors derive from it) is its message and its status.
    `on_oserror`: how an OSError nobody wrapped reads for this command (a Job writing its output names the
    output and the fix); by default the file and the reason, status 1."""
    try:
        return main() or 0
    except KeyboardInterrupt:
        print(f"{prog}: interrupted", file=sys.stderr, flush=True)
        return EXIT_INTERRUPTED
    except CommandError as e:
        if e.keep_lines:
            print(f"{prog}: error: {e}", file=sys.stderr, flush=True)
        else:
            fail(prog, e)
        return e.exit_code
    except OSError as e:
        if on_oserror is not None:
            err = on_oserror(e)
            fail(prog, err)
            return err.exit_code
        where = f" {e.filename}" if e.filename else ""
        print(f"{prog}: error:{where}: {e.strerror or one_line(e)}", file=sys.stderr, flush=True)
        return EXIT_FAILURE
    except MemoryError:
        fail(prog, "out of memory; give it more memory or a smaller input")
        return EXIT_INTERNAL
    except Exception as e:
        if os.environ.get("RENDERLAB_DEBUG"):
            raise
        fail(
            prog,
            f"internal error {type(e).__name__}: {one_line(e)} (a bug; please report it with the command line; "
            "RENDERLAB_DEBUG=1 shows the traceback)",
        )
        return EXIT_INTERNAL


def command(
    prog: str, on_oserror: Callable[[OSError], CommandError] | None = None
) -> Callable[[Callable[[list[str] | None], int | None]], Callable[..., int]]:
    """The entry point's `main(argv=None)` under `guard`: it returns the exit status, whatever happens.

    @cli.command("inventory")
    def main(argv: list[str] | None = None) -> int: ...

    if __name__ == "__main__":
        sys.exit(main())
    """

    def wrap(main: Callable[[list[str] | None], int | None]) -> Callable[..., int]:
        @functools.wraps(main)
        def run(argv: list[str] | None = None) -> int:
            return guard(prog, lambda: main(argv), on_oserror)

        return run

    return wrap


_STOP = threading.Event()


def _on_sigterm(_signum: int, _frame: object) -> None:
    _STOP.set()
    raise KeyboardInterrupt


def stopping() -> bool:
    """A SIGTERM came (see run_job): stop before the next unit of work."""
    return _STOP.is_set()


def run_job(
    prog: str,
    main: Callable[[list[str]], dict],
    on_oserror: Callable[[OSError], CommandError] | None = None,
) -> NoReturn:
    """A Job's entry point: `main(argv)` returns the result, printed as one JSON line, the last on stdout.

    SIGTERM stops it as Ctrl-C does (exit 130, "interrupted"), at the next Python step. Without a handler, a
    container's PID 1 never sees SIGTERM at all: a render pod deleted mid-chunk rendered on through its whole
    grace period and exited 0 (met on the lab). Blender swallows an exception raised inside its render callback,
    so `stopping()` also says it: a loop over frames checks it between them."""
    signal.signal(signal.SIGTERM, _on_sigterm)
    result: dict = {}

    def body() -> int:
        result.update(main(argv()))
        return 0

    try:
        code = guard(prog, body, on_oserror=on_oserror)
    except SystemExit as e:  # --help
        code = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
    else:
        if code == 0:
            sys.stdout.flush()
            print(json.dumps(result, sort_keys=True), flush=True)
    if _under_blender_binary():
        os._exit(code)  # skip Blender's own exit chatter, so the JSON line stays last
    sys.exit(code)


def _under_blender_binary() -> bool:
    bpy = sys.modules.get("bpy")  # never imported here: only a run inside Blender has it loaded
    app = getattr(bpy, "app", None)
    return bool(getattr(app, "binary_path", "")) and not sys.argv[0].endswith(("python", "python3"))
