"""The local lab tests need root and the lab tools; without them they skip and say what is missing."""

from __future__ import annotations

import pytest

from renderlab.workstation.nspawn_lab import lifecycle
from renderlab.workstation.nspawn_lab.options import LabError, LabOptions


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


@pytest.fixture(scope="session")
def booted() -> set[str]:
    """Prefixes of the labs this session booted (the restore drill works on one of those, or on one already up)."""
    return set()


@pytest.fixture(scope="session")
def lab(lab_preflight, booted):
    """One lab for the session: test_local_lab proves it, then the restore drill works on it; torn down at the end."""
    s = LabOptions.from_env()
    with lifecycle.running_lab(s) as running:
        booted.add(s.prefix)
        yield running


@pytest.fixture(scope="session")
def first_run(lab):
    return lifecycle.run_site(lab, "site-1.log")
