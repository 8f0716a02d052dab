"""The one error type every entrypoint turns into a clear message and a non-zero exit."""


class ContentError(Exception):
    """Bad input or an impossible request: the message says what, where and how to fix it."""

    exit_code = 2


class OutputError(ContentError):
    """The output folder cannot be written (read-only, full, not a real folder): exit status 3."""

    exit_code = 3
