"""The local lab tests need root and the lab tools; without them they skip and say what is missing. The lab
itself, and its site.yml runs, are the session's (tests/lab_session.py)."""

from __future__ import annotations

import pytest


@pytest.fixture
def say(capsys):
    """Print a line to the terminal even while output is captured (timings the report must show)."""

    def _say(msg: str) -> None:
        with capsys.disabled():
            print(msg, flush=True)

    return _say
