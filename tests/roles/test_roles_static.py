"""Static checks of every role that need no lab: the Airflow VM's requirements stay pinned to the lab config
and the repo lock, every task that touches a secret hides it, and each role declares its secrets as
required, hidden arguments."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from renderlab.lab.config import load

ROOT = Path(__file__).resolve().parents[2]
ROLES = ROOT / "ansible" / "roles"
HOST_REQUIREMENTS = ROLES / "airflow" / "files" / "requirements.txt"
ALL_ROLES = tuple(sorted(p.name for p in ROLES.iterdir() if (p / "tasks").is_dir()))
# Variables that hold a secret, or a value derived from one (every role listed, also one without any).
SECRET_VARS = {
    "airflow": ("airflow_admin_password", "airflow_db_password", "airflow_secret_key", "airflow_api_secret_key",
                "airflow_jwt_secret", "airflow_fernet_key", "airflow_k8s_token", "airflow_token",
                "airflow_notify_webhook_url"),
    "common": (),
    "kube_node": (),
    # kubeadm init's own output names its bootstrap token: the run is no_log; its failure report masks tokens.
    "kube_control_plane": ("kube_control_plane_kubeconfig",),
    "kube_worker": ("kube_worker_token", "kube_worker_join"),
    "perforce": ("perforce_super_password", "perforce_service_password"),
    "samba": ("samba_users", "item.password", "renderlab_share_password"),
}  # fmt: skip
# Secret arguments; a dotted name is an option of a list's elements (samba_users[].password).
SECRET_ARGS = {
    "airflow": {"airflow_admin_password", "airflow_db_password", "airflow_secret_key"},
    "common": set(),
    # The join token is created by the control plane for each join, never a stored secret or an argument.
    "kube_node": set(),
    "kube_control_plane": set(),
    "kube_worker": set(),
    "perforce": {"perforce_super_password", "perforce_service_password"},
    "samba": {"samba_users.password"},
}


def test_every_role_is_checked():
    assert set(SECRET_VARS) == set(SECRET_ARGS) == set(ALL_ROLES), "list the new role's secrets here"


PIN = re.compile(r"^([A-Za-z0-9_.-]+)==(\S+)", re.M)


def pins(path: Path) -> dict[str, str]:
    return {name.lower().replace("_", "-"): version for name, version in PIN.findall(path.read_text())}


def test_host_requirements_pin_the_lab_configs_airflow():
    version = load(ROOT / "Pulumi.example.yaml").versions.airflow
    assert pins(HOST_REQUIREMENTS)["apache-airflow"] == version


def test_host_requirements_agree_with_the_repo_lock_and_are_all_hashed():
    host, lock = pins(HOST_REQUIREMENTS), pins(ROOT / "requirements" / "lock.txt")
    differ = {n: (v, lock[n]) for n, v in host.items() if n in lock and lock[n] != v}
    assert differ == {}, f"run `make airflow-host-lock`: {differ}"
    blocks = re.split(r"\n(?=[A-Za-z0-9_.-]+==)", HOST_REQUIREMENTS.read_text().split("\n", 2)[2])
    unhashed = [b.split()[0] for b in blocks if b.strip() and "--hash=sha256:" not in b]
    assert unhashed == []
    assert len(host) > 100  # the whole closure, so pip can run with --no-deps


def _tasks(node, found: list[dict]) -> list[dict]:
    if isinstance(node, list):
        for item in node:
            _tasks(item, found)
    elif isinstance(node, dict):
        if "name" in node and any("." in k for k in node) or "block" in node:
            found.append(node)
        for key in ("block", "rescue", "always"):
            _tasks(node.get(key), found)
    return found


def _leaks(task: dict, names: tuple[str, ...]) -> list[str]:
    """Secret names a task uses in its module args, vars, environment or stdin (not in when/until/name)."""
    text = yaml.safe_dump(
        {k: v for k, v in task.items() if k not in ("name", "when", "until", "block", "rescue", "always")}
    )
    return [n for n in names if re.search(rf"\b{n}\b", text)]


@pytest.mark.parametrize("role", ALL_ROLES)
def test_every_task_touching_a_secret_has_no_log(role):
    unsafe = []
    for path in sorted((ROLES / role).glob("*/*.yml")):
        if path.parent.name not in ("tasks", "handlers"):
            continue
        for task in _tasks(yaml.safe_load(path.read_text()), []):
            used = _leaks(task, SECRET_VARS[role])
            # A register of a secret-bearing result is fine only if the task itself hides its output.
            if used and task.get("no_log") is not True:
                unsafe.append(f"{path.relative_to(ROOT)}: {task['name']} uses {used}")
    assert unsafe == []


@pytest.mark.parametrize("role", ALL_ROLES)
def test_secrets_are_required_hidden_arguments_without_defaults(role):
    specs = yaml.safe_load((ROLES / role / "meta" / "argument_specs.yml").read_text())["argument_specs"]
    options = specs["main"]["options"]
    defaults = yaml.safe_load((ROLES / role / "defaults" / "main.yml").read_text()) or {}
    for name in SECRET_ARGS[role]:
        top, _, element = name.partition(".")
        option = options[top]["options"][element] if element else options[name]
        assert option.get("required") is True, name
        assert option.get("no_log") is True, name
        if element:  # a default may only point at the inventory's secret variable, never hold a value
            for item in defaults.get(top, []):
                assert re.fullmatch(r"\{\{ renderlab_\w+ \}\}", item[element]), f"{name}: {item[element]!r}"
        else:
            assert name not in defaults, f"{name} has a default in defaults/main.yml"
    # Role-prefixed variables only.
    prefix = f"{role}_"
    assert all(k.startswith(prefix) for k in defaults), [k for k in defaults if not k.startswith(prefix)]


def test_site_plays_run_in_the_documented_order():
    plays = yaml.safe_load((ROOT / "ansible" / "site.yml").read_text())
    order = [r["role"] for p in plays for r in p.get("roles", [])]
    assert order[-5:] == ["perforce", "kube_node", "kube_control_plane", "kube_worker", "airflow"]
    by_name = {p["name"]: p for p in plays}
    k8s = next(p for n, p in by_name.items() if "Kubernetes connection" in n)
    assert "never" in k8s["tags"], "the k8s connection play must not run before the cluster layer exists"
