"""`python -m renderlab.jobs.fetch --source SRC --dest DIR`: the fetch image's entrypoint.

Exit status: 0 done, 1 other failure, 2 bad arguments, 3 nothing at that source/change (or a source file
name that is not UTF-8), 4 authentication or SSL trust refused, 5 server unreachable after retries (or past
--retry-deadline), 6 destination not writable or full, 7 verification failed after a re-transfer,
70 internal error (a bug), 130 interrupted. Progress goes to stderr, every failure is one line there; the
JSON result line is the last line on stdout.
"""

from __future__ import annotations

import argparse
import signal
import sys
from pathlib import Path

from . import credentials
from .errors import FetchError, Interrupted, UsageError
from .filesync import fetch_folder
from .perforce import DEFAULT_DEADLINE_S, fetch_depot
from .progress import Reporter
from .source import FileSource, parse_source

EXIT_INTERNAL = 70  # an error this tool did not foresee: a bug (one line, never a traceback)


class _Parser(argparse.ArgumentParser):
    """Bad arguments are one line (and exit 2), like every other failure."""

    def error(self, message: str):  # type: ignore[override]
        raise UsageError(f"{message} (see python -m renderlab.jobs.fetch --help)")


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(
        prog="python -m renderlab.jobs.fetch",
        description="Bring a song project's assets at an exact change onto the share, verified.",
    )
    p.add_argument(
        "--source",
        required=True,
        help="p4://[ssl:]HOST:PORT//depot/path/...@CHANGE (CHANGE: number or latest) or file:///abs/dir",
    )
    p.add_argument(
        "--dest", required=True, help="the project's asset folder on the share: <share>/assets/<project>"
    )
    p.add_argument(
        "--verify",
        choices=("quick", "full"),
        default="quick",
        help="quick: re-hash files whose size/mtime/ctime/inode changed (default); full: re-hash every file",
    )
    p.add_argument("--secret-dir", help="mounted Secret folder with user, password|ticket, fingerprint files")
    p.add_argument("--retries", type=int, default=4, help="retries when the Perforce server is unreachable")
    p.add_argument(
        "--retry-deadline",
        type=float,
        default=DEFAULT_DEADLINE_S,
        metavar="SECONDS",
        help=f"no retry starts later than this after the first attempt (default {DEFAULT_DEADLINE_S:.0f})",
    )
    p.add_argument("--quiet", action="store_true", help="no progress on stderr (errors are still printed)")
    return p


def _on_signal(signum: int, _frame: object) -> None:
    raise Interrupted(
        f"interrupted by signal {signal.Signals(signum).name}; the previous manifest stays in force and the "
        "next run completes the work"
    )


def main(argv: list[str] | None = None) -> int:
    reporter = Reporter(quiet=True)
    try:
        args = build_parser().parse_args(argv)
        signal.signal(signal.SIGTERM, _on_signal)
        signal.signal(signal.SIGINT, _on_signal)
        reporter = Reporter(quiet=args.quiet)
        if not 0 < args.retry_deadline <= 86400:
            raise UsageError(
                f"--retry-deadline {args.retry_deadline:g} is out of range; give 1..86400 seconds"
            )
        src = parse_source(args.source)
        dest = Path(args.dest)
        verify_full = args.verify == "full"
        if isinstance(src, FileSource):
            result = fetch_folder(src, dest, reporter, verify_full=verify_full)
        else:
            creds = credentials.load(args.secret_dir)
            result = fetch_depot(
                src,
                dest,
                creds,
                reporter,
                verify_full=verify_full,
                retries=max(0, args.retries),
                deadline_s=args.retry_deadline,
            )
    except FetchError as e:
        reporter.finish()
        print(f"fetch: error: {_one_line(str(e))}", file=sys.stderr)
        return e.exit_code
    except Exception as e:  # never a traceback: one line naming the error, and a distinct exit status
        reporter.finish()
        print(
            f"fetch: error: internal error {type(e).__name__}: {_one_line(str(e))} (a bug in the fetch; "
            "please report it with the command line)",
            file=sys.stderr,
        )
        return EXIT_INTERNAL
    reporter.log(
        f"changelist {result.changelist}: {result.files_transferred} of {result.files_total} files transferred "
        f"({result.bytes_transferred / 1e6:.1f} MB), {result.files_removed} removed, {result.seconds:.2f} s"
    )
    print(result.json_line(), flush=True)
    return 0


def _one_line(text: str) -> str:
    return " / ".join(line.strip() for line in text.splitlines() if line.strip())


if __name__ == "__main__":
    sys.exit(main())
