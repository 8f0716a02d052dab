"""Failure classes of the fetch: each one maps to a distinct exit status and carries one clear message."""

from __future__ import annotations


class FetchError(Exception):
    """A fetch that cannot complete. `str()` says what failed, where, and how to fix it."""

    exit_code = 1
    retryable = False


class UsageError(FetchError):
    """Bad arguments: the --source or --dest value itself is wrong."""

    exit_code = 2


class SourceError(FetchError):
    """The source exists but does not hold what was asked for (bad depot path, no files at that change)."""

    exit_code = 3


class AuthError(FetchError):
    """Credentials or SSL trust were refused; retrying cannot help."""

    exit_code = 4


class UnreachableError(FetchError):
    """The server did not answer; retried with backoff before giving up."""

    exit_code = 5
    retryable = True


class DestinationError(FetchError):
    """The destination cannot be written (permissions, not a directory, disk full)."""

    exit_code = 6


class VerificationError(FetchError):
    """Files still differ from their source digests after a forced re-transfer."""

    exit_code = 7


class Interrupted(FetchError):
    """SIGTERM/SIGINT: the previous manifest stays in force; the next run completes the work."""

    exit_code = 130
