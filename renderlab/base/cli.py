"""What every renderlab command-line entry point shares: each failure is one line on stderr with a
documented exit status, never a Python traceback. (It lives in renderlab/jobs, beside the atomic writer,
because the Jobs' image ships only that folder; the workstation tools import it from here too.)

    2   bad arguments (argparse's usage line is folded into the one error line)
    70  internal error: something the command did not foresee -- a bug; the line names the exception
    130 interrupted (Ctrl-C)

Each command documents its own other codes (usually 1: the input or the environment is wrong).
`RENDERLAB_DEBUG=1` lets an unforeseen error through with its traceback, for whoever fixes the bug.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable

EXIT_USAGE = 2
EXIT_INTERNAL = 70
EXIT_INTERRUPTED = 130


def one_line(text: object) -> str:
    return " / ".join(line.strip() for line in str(text).splitlines() if line.strip())


class Parser(argparse.ArgumentParser):
    """argparse with its errors as one line (`PROG: error: MESSAGE (see --help)`) and exit status 2."""

    def error(self, message: str):  # type: ignore[override]
        print(f"{self.prog}: error: {one_line(message)} (see --help)", file=sys.stderr)
        sys.exit(EXIT_USAGE)


def guard(prog: str, main: Callable[[], int | None]) -> int:
    """Run `main`; turn what escapes it into one line and an exit status."""
    try:
        return main() or 0
    except KeyboardInterrupt:
        print(f"{prog}: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except OSError as e:
        where = f" {e.filename}" if e.filename else ""
        print(f"{prog}: error:{where}: {e.strerror or one_line(e)}", file=sys.stderr)
        return 1
    except Exception as e:
        if os.environ.get("RENDERLAB_DEBUG"):
            raise
        print(
            f"{prog}: error: internal error {type(e).__name__}: {one_line(e)} (a bug; please report it "
            "with the command line; RENDERLAB_DEBUG=1 shows the traceback)",
            file=sys.stderr,
        )
        return EXIT_INTERNAL
