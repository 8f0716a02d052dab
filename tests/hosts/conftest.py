"""testinfra suite for the lab's hosts; runs only against an inventory given on the command line:

    pytest tests/hosts --hosts=ansible://all --ansible-inventory=INVENTORY

with RENDERLAB_HOST_SECRETS=<secrets vars file> for the checks that log in (SMB). Without --hosts nothing here is
collected (a plain `pytest` run must not probe this machine as if it were a lab host).

A module declares the inventory group it checks with `pytestmark = pytest.mark.group("storage")`; its tests
run on that group's hosts only.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import yaml

HOW = "pytest tests/hosts --hosts=ansible://all --ansible-inventory=INVENTORY"


def _no_hosts(config: pytest.Config) -> bool:
    return not config.getoption("hosts", default=None)


def pytest_ignore_collect(collection_path: Path, config: pytest.Config) -> bool | None:
    if _no_hosts(config) and collection_path.name != "conftest.py":
        return True
    return None


def pytest_report_header(config: pytest.Config) -> str | None:
    if _no_hosts(config):
        return f"tests/hosts: not collected: no --hosts given (run `{HOW}`)"
    return None


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "group(name): run only on hosts of this inventory group")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    keep, drop = [], []
    for item in items:
        marker = item.get_closest_marker("group")
        callspec = getattr(item, "callspec", None)
        testinfra_host = callspec.params.get("_testinfra_host") if callspec else None
        if marker is None or testinfra_host is None:
            keep.append(item)
            continue
        if not hasattr(testinfra_host, "ansible"):
            raise pytest.UsageError(
                f"--hosts={config.getoption('hosts')} matched no host; check --ansible-inventory and that "
                "ansible-inventory is on PATH (e.g. PATH=.venv/bin:$PATH)"
            )
        groups = testinfra_host.ansible.get_variables().get("group_names", [])
        (keep if marker.args[0] in groups else drop).append(item)
    if drop:
        config.hook.pytest_deselected(items=drop)
        items[:] = keep


@pytest.fixture(scope="module")
def lab_vars(host) -> dict:
    """The host's inventory variables (renderlab_* derived from the lab config)."""
    return host.ansible.get_variables()


@pytest.fixture(scope="session")
def lab_secrets() -> dict:
    path = os.environ.get("RENDERLAB_HOST_SECRETS")
    if not path:
        pytest.fail(
            "RENDERLAB_HOST_SECRETS is not set; point it at the secrets vars file given to ansible-playbook "
            "(python -m renderlab.lab.host_secrets from-pulumi -o FILE)",
            pytrace=False,
        )
    return yaml.safe_load(Path(path).read_text())


@pytest.fixture(scope="module")
def in_container(host) -> bool:
    return host.run("systemd-detect-virt --container").rc == 0
