"""Keep the lab's secrets out of the testinfra suite's output (the lab lane keeps it as testinfra.log).

A failing check's long traceback shows the arguments of its frames: an HTTP library's frame shows the login
body with the admin password, a test's frame shows the `lab_secrets` it was given. So the secrets mapping has
a repr without values, and every failed report's text has each secret (host_secrets.log_needles), and each
piece of one, replaced by its name before pytest prints it. Registered by tests/hosts/conftest.py; `pytest -p tests.hosts.secret_redaction`
loads it alone.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
from pathlib import Path

import pytest
import yaml

from renderlab.base.errors import CommandError
from renderlab.lab import host_secrets

SECRETS_ENV = "RENDERLAB_HOST_SECRETS"
_NEEDLES = pytest.StashKey[list[tuple[str, str]]]()


class LabSecrets(dict):
    """The secrets vars file's mapping; printed (a traceback's argument, an assertion) without its values."""

    def __repr__(self) -> str:
        return f"<lab secrets: {', '.join(sorted(self))}>"


def read(path: str | Path) -> LabSecrets:
    return LabSecrets(yaml.safe_load(Path(path).read_text()))


# A run this long of a secret's characters is no coincidence (62**8 alphanumerics) and is hidden too: pytest
# shortens a long value in an assertion to its two ends ('eZyQSOk8Waqh...XxrdIo9awKewd').
PIECE = 8


def redact(text: str, needles: list[tuple[str, str]]) -> str:
    """`text` with every secret, and every run of PIECE or more of a secret's characters, replaced by its name."""
    pieces: dict[str, str] = {}
    for name, needle in needles:
        if len(needle) < PIECE:
            text = text.replace(needle, f"<secret {name}>")
        for i in range(len(needle) - PIECE + 1):
            pieces.setdefault(needle[i : i + PIECE], name)
    out: list[str] = []
    i = 0
    while i < len(text):
        name = pieces.get(text[i : i + PIECE])
        if name is None:
            out.append(text[i])
            i += 1
            continue
        end = i + PIECE
        while end < len(text) and text[end - PIECE + 1 : end + 1] in pieces:
            end += 1
        out.append(f"<secret {name}>")
        i = end
    return "".join(out)


def pytest_configure(config: pytest.Config) -> None:
    path = os.environ.get(SECRETS_ENV)
    needles: list[tuple[str, str]] = []
    # Not a secrets file: the lab_secrets fixture says so, and nothing of it is to hide.
    with contextlib.suppress(OSError, ValueError, TypeError, AttributeError, yaml.YAMLError, CommandError):
        needles = host_secrets.log_needles(read(path)) if path else []
    config.stash[_NEEDLES] = needles


class _Redacted:
    """A failure's text with the secrets replaced; printed as pytest prints any (the summary line too)."""

    def __init__(self, text: str, crash: object, needles: list[tuple[str, str]]) -> None:
        self.text = text
        if crash is not None and dataclasses.is_dataclass(crash) and hasattr(crash, "message"):
            crash = dataclasses.replace(crash, message=redact(crash.message, needles))
        self.reprcrash = crash

    def toterminal(self, out) -> None:
        for line in self.text.splitlines():
            out.line(line)

    def __str__(self) -> str:
        return self.text


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo) -> pytest.TestReport:
    report = yield
    needles = item.config.stash.get(_NEEDLES, [])
    if needles and report.longrepr is not None and not isinstance(report.longrepr, tuple):
        text = str(report.longrepr)
        clean = redact(text, needles)
        if clean != text:
            report.longrepr = _Redacted(clean, getattr(report.longrepr, "reprcrash", None), needles)
    if needles:
        report.sections = [(title, redact(content, needles)) for title, content in report.sections]
    return report
