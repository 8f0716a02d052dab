"""The local lab tests need root and the lab tools; without them they skip and say what is missing."""

from __future__ import annotations

import pytest

from renderlab.locallab import lab as locallab
from renderlab.locallab.settings import LabError


@pytest.fixture(scope="session")
def lab_preflight() -> None:
    try:
        locallab.preflight()
    except LabError as e:
        pytest.skip(f"local lab unavailable here: {e}")


@pytest.fixture
def say(request):
    """Print a line to the terminal even while output is captured (timings the report must show)."""
    reporter = request.config.pluginmanager.get_plugin("terminalreporter")

    def _say(msg: str) -> None:
        if reporter is not None:
            reporter.write_line(msg)

    return _say
