"""The one local lab a test session boots (a pytest plugin, loaded by tests/conftest.py).

The lab lane (tests/lab) and the cluster lane (tests/cluster) share it: the lab lane's two site.yml runs are
the ones that build the kubeadm cluster the cluster lane then checks, so CI pays for one lab boot and two
playbook runs, not two of each. tests/conftest.py runs the lab tests at the end of the session, the
cluster lane last (its final check stops and starts a node), so the lab is up only while it is used.
"""

from __future__ import annotations

import os

import pytest

from renderlab.workstation.nspawn_lab import lifecycle
from renderlab.workstation.nspawn_lab.options import LabError, LabOptions


@pytest.fixture(scope="session")
def lab_preflight() -> None:
    try:
        lifecycle.preflight()
    except LabError as e:
        pytest.skip(f"local lab unavailable here: {e}")


@pytest.fixture(scope="session")
def booted() -> set[str]:
    """Prefixes of the labs this session booted (the restore drill works on one of those, or on one already up)."""
    return set()


@pytest.fixture(scope="session")
def lab(lab_preflight, booted):
    """One lab for the session, torn down at its end whatever happens (RENDERLAB_LAB_KEEP=1 leaves it up for
    `make lab-rehearsal` or a second `make cluster-test`; `make lab-local-down` with the same env removes it)."""
    s = LabOptions.from_env()
    if os.environ.get("RENDERLAB_LAB_KEEP") == "1":
        booted.add(s.prefix)
        yield lifecycle.up(s)
        return
    with lifecycle.running_lab(s) as running:
        booted.add(s.prefix)
        yield running


@pytest.fixture(scope="session")
def first_run(lab) -> lifecycle.PlaybookRun:
    return lifecycle.run_site(lab, "site-1.log")


@pytest.fixture(scope="session")
def second_run(lab, first_run) -> lifecycle.PlaybookRun:
    """The second site.yml run, once the first has succeeded (judged by the tests that use it)."""
    if first_run.real_failures:
        pytest.fail(f"site.yml's first run failed; see {first_run.log}:\n{first_run.why()}", pytrace=False)
    return lifecycle.run_site(lab, "site-2.log")
