"""The local lab tests need root and the lab tools; without them they skip and say what is missing."""

from __future__ import annotations

import pytest

from renderlab.workstation.nspawn_lab import lifecycle
from renderlab.workstation.nspawn_lab.options import LabError


@pytest.fixture(scope="session")
def lab_preflight() -> None:
    try:
        lifecycle.preflight()
    except LabError as e:
        pytest.skip(f"local lab unavailable here: {e}")


@pytest.fixture
def say(capsys):
    """Print a line to the terminal even while output is captured (timings the report must show)."""

    def _say(msg: str) -> None:
        with capsys.disabled():
            print(msg, flush=True)

    return _say
