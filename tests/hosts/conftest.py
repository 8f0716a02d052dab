"""testinfra suite for the lab's hosts; runs only against an inventory given on the command line:

    pytest tests/hosts --hosts=ansible://all --ansible-inventory=INVENTORY

with RENDERLAB_HOST_SECRETS=<secrets vars file> for the checks that log in (SMB). Without --hosts nothing here is
collected (a plain `pytest` run must not probe this machine as if it were a lab host).

A module declares the inventory group it checks with `pytestmark = pytest.mark.group("storage")`; its tests
run on that group's hosts only.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from testinfra.utils import ansible_runner

from renderlab.lab import ansible_unsafe
from tests.hosts import secret_redaction

HOW = "pytest tests/hosts --hosts=ansible://all --ansible-inventory=INVENTORY"

# testinfra reads the inventory through `ansible-inventory --list`, whose JSON keeps the lab inventory's unsafe
# marking ({"__ansible_unsafe": "10.231.0.11"} for ansible_host); unwrap it as Ansible's own loader does.
_ansible_inventory = ansible_runner.get_ansible_inventory


def _plain_inventory(*args, **kwargs):
    return ansible_unsafe.plain(_ansible_inventory(*args, **kwargs))


ansible_runner.get_ansible_inventory = _plain_inventory


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
    if not config.pluginmanager.is_registered(secret_redaction):
        config.pluginmanager.register(secret_redaction)


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
def lab_secrets() -> secret_redaction.LabSecrets:
    path = os.environ.get("RENDERLAB_HOST_SECRETS")
    if not path:
        pytest.fail(
            "RENDERLAB_HOST_SECRETS is not set; point it at the secrets vars file given to ansible-playbook "
            "(python -m renderlab.lab.host_secrets from-pulumi -o FILE)",
            pytrace=False,
        )
    return secret_redaction.read(path)  # its repr holds no value


@pytest.fixture(scope="module")
def in_container(host) -> bool:
    return host.run("systemd-detect-virt --container").rc == 0


# --- the per-role, per-host report (tests/lab/host_checks.py judges it) ---------------------------------------
REPORT_ENV = "RENDERLAB_HOST_REPORT"


def _unit(item: pytest.Item) -> str:
    """The checks' unit: the module's role (test_samba -> samba), with the class for a module split by group."""
    role = item.module.__name__.rsplit(".", 1)[-1].removeprefix("test_")
    return f"{role}.{item.cls.__name__}" if item.cls else role


def _describe(item: pytest.Item) -> dict:
    marker = item.get_closest_marker("group")
    callspec = getattr(item, "callspec", None)
    testinfra_host = callspec.params.get("_testinfra_host") if callspec else None
    variables = testinfra_host.ansible.get_variables() if hasattr(testinfra_host, "ansible") else {}
    groups, host = variables.get("group_names", []), variables.get("inventory_hostname", "")
    return {"unit": _unit(item), "group": marker.args[0] if marker else None, "host": host,
            "host_groups": list(groups), "outcome": None, "reason": ""}  # fmt: skip


@pytest.hookimpl(trylast=True)
def pytest_collection_finish(session: pytest.Session) -> None:
    if os.environ.get(REPORT_ENV):
        session.config._renderlab_report = {item.nodeid: _describe(item) for item in session.items}


def pytest_deselected(items: list[pytest.Item]) -> None:
    # Items deselected by the group filter above: recorded so that a check no host ran is seen.
    config = items[0].config if items else None
    if config is not None and os.environ.get(REPORT_ENV):
        deselected = getattr(config, "_renderlab_deselected", {})
        deselected.update({item.nodeid: {**_describe(item), "outcome": "deselected"} for item in items})
        config._renderlab_deselected = deselected


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    if not os.environ.get(REPORT_ENV):
        return
    entry = _RESULTS.setdefault(report.nodeid, {"outcome": None, "reason": ""})
    if report.failed:
        entry["outcome"] = "failed"
    elif report.skipped and entry["outcome"] != "failed":
        entry["outcome"] = "skipped"
        longrepr = report.longrepr
        entry["reason"] = str(longrepr[2] if isinstance(longrepr, tuple) else longrepr).removeprefix(
            "Skipped: "
        )
    elif report.when == "call" and report.passed and entry["outcome"] is None:
        entry["outcome"] = "passed"


_RESULTS: dict[str, dict] = {}


def pytest_sessionfinish(session: pytest.Session) -> None:
    path = os.environ.get(REPORT_ENV)
    if not path:
        return
    items = {**getattr(session.config, "_renderlab_deselected", {})}
    for nodeid, entry in getattr(session.config, "_renderlab_report", {}).items():
        items[nodeid] = {**entry, **_RESULTS.get(nodeid, {"outcome": "not run", "reason": ""})}
    Path(path).write_text(json.dumps(items, indent=1, sort_keys=True))
