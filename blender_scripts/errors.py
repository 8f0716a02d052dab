"""The content's errors: each entry point turns them into one clear line and a non-zero exit (renderlab.base.cli).

Exit status of every blender_scripts entry point: 0 done, 2 bad input or impossible request, 3 the output
folder cannot be written (read-only, full, not a folder), 70 internal error (a bug), 130 interrupted.
"""

from __future__ import annotations

from renderlab.base.errors import CommandError, write_failure


class ContentError(CommandError):
    """Bad input or an impossible request: the message says what, where and how to fix it."""

    exit_code = 2


class OutputError(ContentError):
    """The output folder cannot be written (read-only, full, not a real folder): exit status 3."""

    exit_code = 3


def output_error(exc: OSError, path: object, doing: str) -> OutputError:
    """One message for an OSError on the output side: what, where, and the fix."""
    return OutputError(write_failure(exc, path, doing))


def unwrapped_output_error(exc: OSError) -> OutputError:
    """An output write the entry point did not wrap itself (`cli.run_job`'s on_oserror)."""
    return output_error(exc, exc.filename or "the output folder", "write")
