"""The one error type every entrypoint turns into a clear message and a non-zero exit."""


class ContentError(Exception):
    """Bad input or an impossible request: the message says what, where and how to fix it."""
