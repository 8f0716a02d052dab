"""Suite-wide rule: a lane that CI builds for itself may not skip there.

A lane whose tools are missing skips on a workstation and names the command that builds them (`make tools`,
`make k8s-artifacts`, `make k8s-provider`, the local lab's preflight). `.ci/run` builds those first and sets
RENDERLAB_REQUIRE_LANES=1, under which such a skip is a failure: CI cannot go green by skipping a lane.
"""

from __future__ import annotations

import os

import pytest

# The words a lane's skip reason carries when it could have run here after the named build.
BUILDABLE_LANE_MARKS = (
    "`make tools`",
    "`make k8s-artifacts`",
    "`make k8s-provider`",
    "`make real-midi`",
    "local lab unavailable here",
)


def lane_required() -> bool:
    return os.environ.get("RENDERLAB_REQUIRE_LANES") == "1"


def skip_reason(report: pytest.TestReport) -> str:
    longrepr = report.longrepr
    if isinstance(longrepr, tuple) and len(longrepr) == 3:
        return str(longrepr[2])
    return str(longrepr)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo):
    outcome = yield
    report = outcome.get_result()
    if report.skipped and lane_required():
        reason = skip_reason(report)
        if any(mark in reason for mark in BUILDABLE_LANE_MARKS):
            report.outcome = "failed"
            report.longrepr = f"RENDERLAB_REQUIRE_LANES=1 but the lane skipped: {reason}"


# The session's one local lab (tests/lab_session.py), shared by the lab lane and the cluster lane.
pytest_plugins = ["tests.lab_session"]


def _lab_rank(item: pytest.Item) -> float:
    """0: no lab; 0.5: `make lab`'s own lab (booted and torn down before the session's); 1: a lab test; 1.5: a
    check of the built Pulumi Kubernetes provider (in CI its build runs beside the suite until then:
    tests/provider_build.py); 2: the cluster lane (last: its final check stops and starts a node)."""
    names = getattr(item, "fixturenames", ())
    if "make_lab" in names:
        return 0.5  # a lab of its own (tests/lab/test_make_lab.py): up and down before the session's boots
    if "cluster" in names:
        return 2
    if item.get_closest_marker("k8s_provider"):
        return 1.5
    return 1 if item.get_closest_marker("lab") else 0


def pytest_collection_modifyitems(
    session: pytest.Session, config: pytest.Config, items: list[pytest.Item]
) -> None:
    # The session's lab is booted by the first test that needs it and torn down at the session's end: the lab
    # tests run last (stable within each rank), so the rest of the suite does not share the machine with it.
    items.sort(key=_lab_rank)
