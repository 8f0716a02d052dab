"""Static checks of every role that need no lab: the Airflow VM's requirements stay pinned to the lab config
and the repo lock, every task that touches a secret hides it, and each role declares its secrets as
required, hidden arguments."""

from __future__ import annotations

import json
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
    "airflow": ("airflow_admin_password", "airflow_db_password", "airflow_api_secret_key", "airflow_jwt_secret",
                "airflow_fernet_key", "airflow_fernet_previous_keys", "airflow_fernet_digest", "airflow_k8s_token",
                "airflow_token", "airflow_notify_webhook_url", "airflow_lab_ca", "airflow_tls_held",
                "airflow_tls_issued", "airflow_admin_login"),
    "common": (),
    "firewall": (),
    "kube_node": ("kube_node_registry_password",),
    # kubeadm init's own output names its bootstrap token: the run is no_log; its failure report masks tokens.
    "kube_control_plane": ("kube_control_plane_kubeconfig",),
    "kube_worker": ("kube_worker_token", "kube_worker_join"),
    "perforce": ("perforce_super_password", "perforce_service_password", "perforce_lab_ca", "perforce_tls_held",
                 "perforce_tls_issued"),
    "samba": ("samba_users", "item.password", "renderlab_share_password"),
    "backup": ("backup_password", "backup_s3_access_key_id", "backup_s3_secret_access_key"),
}  # fmt: skip
# Secret arguments; a dotted name is an option of a list's elements (samba_users[].password).
SECRET_ARGS = {
    "airflow": {
        "airflow_admin_password",
        "airflow_db_password",
        "airflow_api_secret_key",
        "airflow_jwt_secret",
        "airflow_fernet_key",
        "airflow_lab_ca",
    },
    "common": set(),
    "firewall": set(),
    # The join token is created by the control plane for each join, never a stored secret or an argument.
    "kube_node": {"kube_node_registry_password"},
    "kube_control_plane": set(),
    "kube_worker": set(),
    "perforce": {"perforce_super_password", "perforce_service_password", "perforce_lab_ca"},
    "samba": {"samba_users.password"},
    "backup": {"backup_password"},
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
    # The one named exception (requirements/airflow-host.in): the FAB auth manager's Flask-AppBuilder needs <3.
    assert set(differ) <= {"python-dateutil"}, f"run `make airflow-host-lock`: {differ}"
    assert int(host["python-dateutil"].split(".")[0]) < 3
    assert "apache-airflow-providers-fab" in host
    blocks = re.split(r"\n(?=[A-Za-z0-9_.-]+==)", HOST_REQUIREMENTS.read_text().split("\n", 2)[2])
    unhashed = [b.split()[0] for b in blocks if b.strip() and "--hash=sha256:" not in b]
    assert unhashed == []
    assert len(host) > 100  # the whole closure, so pip can run with --no-deps


def _tasks(node, found: list[dict]) -> list[dict]:
    """Every task of a tasks/handlers file: each element of a task list is a task or a block, whatever its module
    is called (FQCN, short or ansible.legacy)."""
    if isinstance(node, list):
        for item in node:
            _tasks(item, found)
    elif isinstance(node, dict):
        found.append(node)
        for key in ("block", "rescue", "always"):
            _tasks(node.get(key), found)
    return found


TEMPLATE_MODULES = {"template", "ansible.builtin.template", "ansible.legacy.template"}
TEMPLATE_LOOKUP = re.compile(
    r"lookup\(\s*['\"](?:ansible\.builtin\.)?template['\"]\s*,\s*['\"]([^'\"]+)['\"]"
)


def _rendered_templates(task: dict, role_dir: Path) -> list[Path]:
    """The template files a task renders: a template module's src (each item of a literal loop), and any
    lookup('template', ...). A src the test cannot resolve means every template of the role."""
    srcs: list[str] = []
    for key, args in task.items():
        if key in TEMPLATE_MODULES:
            free_form = isinstance(args, str)  # src=x dest=y
            options = dict(p.split("=", 1) for p in args.split() if "=" in p) if free_form else args
            srcs.append(str(options.get("src", "")))
    srcs += TEMPLATE_LOOKUP.findall(json.dumps(task))
    found: list[Path] = []
    templates = role_dir / "templates"
    for src in srcs:
        loop = task.get("loop") or task.get("with_items")
        if "{{ item }}" in src and isinstance(loop, list) and all(isinstance(i, str) for i in loop):
            found += [templates / src.replace("{{ item }}", i) for i in loop]
        elif "{{" in src or not (templates / src).is_file():
            found += sorted(templates.rglob("*"))
        else:
            found.append(templates / src)
    return [p for p in found if p.is_file()]


def _leaks(task: dict, names: tuple[str, ...], role_dir: Path) -> list[str]:
    """Secret names a task uses in its module args, vars, environment or stdin (not in when/until/name), or in
    the templates it renders."""
    text = yaml.safe_dump(
        {k: v for k, v in task.items() if k not in ("name", "when", "until", "block", "rescue", "always")}
    )
    rendered = "".join(p.read_text() for p in _rendered_templates(task, role_dir))
    # A list of secret-bearing records read for one harmless field only (e.g. the share users' names).
    rendered = re.sub(r"\b(\w+)\s*\|\s*map\(attribute=['\"](?!password)\w+['\"]\)", "", rendered)
    return [n for n in names if re.search(rf"\b{re.escape(n)}\b", text + rendered)]


def unsafe_tasks(role_dir: Path, names: tuple[str, ...]) -> list[str]:
    unsafe = []
    for path in sorted(role_dir.glob("*/*.yml")):
        if path.parent.name not in ("tasks", "handlers"):
            continue
        for task in _tasks(yaml.safe_load(path.read_text()), []):
            used = _leaks(task, names, role_dir)
            # A register of a secret-bearing result is fine only if the task itself hides its output.
            if used and task.get("no_log") is not True:
                unsafe.append(
                    f"{path.relative_to(role_dir.parent)}: {task.get('name', '(unnamed)')} uses {used}"
                )
    return unsafe


@pytest.mark.parametrize("role", ALL_ROLES)
def test_no_secret_goes_through_a_tasks_environment(role):
    """Ansible writes a task's `environment` onto the become command line (`sudo ... /bin/sh -c 'VAR=value
    python3'`), which sudo logs to the journal and `ps` shows: found by the lab lane's log scan (PGPASSWORD).
    Secrets go to commands on stdin."""
    found = []
    for path in sorted((ROLES / role).glob("*/*.yml")):
        if path.parent.name in ("tasks", "handlers"):
            for task in _tasks(yaml.safe_load(path.read_text()), []):
                text = yaml.safe_dump(task.get("environment", {}))
                found += [
                    f"{path.name}: {task.get('name')}: {n}"
                    for n in SECRET_VARS[role]
                    if re.search(rf"\b{n}\b", text)
                ]
    assert found == []


@pytest.mark.parametrize("role", ALL_ROLES)
def test_every_task_touching_a_secret_has_no_log(role):
    assert unsafe_tasks(ROLES / role, SECRET_VARS[role]) == []


def test_the_no_log_check_follows_templates_and_every_module_name(tmp_path):
    """What the check used to miss: a short module name, and a secret that reaches a file through a template."""
    role = tmp_path / "demo"
    (role / "tasks").mkdir(parents=True)
    (role / "templates").mkdir()
    (role / "templates" / "conf.j2").write_text("password = {{ demo_secret }}\n")
    (role / "templates" / "plain.j2").write_text("port = {{ demo_port }}\n")
    (role / "templates" / "a.spec.j2").write_text("x\n")
    (role / "templates" / "b.spec.j2").write_text("{{ demo_secret }}\n")
    tasks = [
        {"name": "short template", "template": {"src": "conf.j2", "dest": "/etc/x"}},
        {"name": "free-form legacy", "ansible.legacy.template": "src=conf.j2 dest=/etc/y"},
        {"name": "short command", "command": "echo {{ demo_secret }}"},
        {
            "name": "looped",
            "ansible.builtin.template": {"src": "{{ item }}.spec.j2", "dest": "/x"},
            "loop": ["a", "b"],
        },
        {
            "name": "lookup",
            "ansible.builtin.copy": {"content": "{{ lookup('template', 'conf.j2') }}", "dest": "/z"},
        },
        {"name": "hidden", "template": {"src": "conf.j2", "dest": "/etc/x"}, "no_log": True},
        {"name": "harmless", "template": {"src": "plain.j2", "dest": "/etc/p"}},
        {"block": [{"name": "in a block", "shell": "echo {{ demo_secret }}"}]},
    ]
    (role / "tasks" / "main.yml").write_text(yaml.safe_dump(tasks))
    found = [line.split(": ", 1)[1] for line in unsafe_tasks(role, ("demo_secret",))]
    assert found == [
        "short template uses ['demo_secret']",
        "free-form legacy uses ['demo_secret']",
        "short command uses ['demo_secret']",
        "looped uses ['demo_secret']",
        "lookup uses ['demo_secret']",
        "in a block uses ['demo_secret']",
    ]


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
    assert order[-6:] == ["perforce", "kube_node", "kube_control_plane", "kube_worker", "airflow", "backup"]
    by_name = {p["name"]: p for p in plays}
    k8s = next(p for n, p in by_name.items() if "Kubernetes connection" in n)
    assert "never" in k8s["tags"], "the k8s connection play must not run before the cluster layer exists"


JINJA = re.compile(r"\{\{(.*?)\}\}|\{%(.*?)%\}", re.S)
BARE = ("when", "that", "until", "changed_when", "failed_when", "loop")  # keys whose values are expressions
WIRED_ROLES = ALL_ROLES


def _expressions(node, found: list[str]) -> list[str]:
    if isinstance(node, dict):
        for key, value in node.items():
            if key in BARE:
                found += [str(v) for v in (value if isinstance(value, list) else [value])]
            else:
                _expressions(value, found)
    elif isinstance(node, list):
        for value in node:
            _expressions(value, found)
    elif isinstance(node, str):
        found += [a or b for a, b in JINJA.findall(node)]
    return found


def _variables(expression: str) -> set[str]:
    """The names an expression reads: not attributes (x.name), filters or tests (| name, is name), strings."""
    text = re.sub(r"'[^']*'|\"[^\"]*\"", "''", expression)
    text = re.sub(r"(\.|\|\s*|\bis\s+(not\s+)?)[A-Za-z_]\w*", "", text)
    return set(re.findall(r"\b[A-Za-z_]\w*\b", text))


def _role_reads(role: str) -> dict[str, set[str]]:
    reads: dict[str, set[str]] = {}
    for path in sorted((ROLES / role).rglob("*")):
        if path.suffix not in (".yml", ".j2") or path.parts[-2:] == ("meta", "argument_specs.yml"):
            continue
        text = path.read_text()
        if path.suffix == ".yml":
            exprs = _expressions(yaml.safe_load(text), [])
        else:
            exprs = [a or b for a, b in JINJA.findall(text)]
        reads[str(path.relative_to(ROOT))] = set().union(set(), *map(_variables, exprs))
    return reads


def _foreign(role: str, names: set[str]) -> list[str]:
    """The lab's values (renderlab_*) and other roles' variables."""
    others = tuple(f"{r}_" for r in ALL_ROLES if r != role and not f"{role}_".startswith(f"{r}_"))
    return sorted(n for n in names if n.startswith(("renderlab_", *others)))


@pytest.mark.parametrize("role", WIRED_ROLES)
def test_a_role_reads_only_its_own_prefixed_variables(role):
    """site.yml maps the lab's renderlab_* values onto each role's variables; a role never reaches for them."""
    foreign = {path: _foreign(role, names) for path, names in _role_reads(role).items()}
    assert {path: names for path, names in foreign.items() if names} == {}


def test_the_variable_walk_sees_a_lab_value_read_inside_a_role():
    names = _variables("renderlab_share_path | default(samba_x) ~ item.name ~ 'renderlab_y' is perforce_z")
    assert _foreign("samba", names) == ["renderlab_share_path"]
    assert _foreign("airflow", _variables("perforce_port | int")) == ["perforce_port"]
    assert _foreign("kube_worker", _variables("kube_node_install_changed")) == ["kube_node_install_changed"]
    assert any(_foreign("samba", n) for n in _role_reads("samba").values()) is False


def test_role_defaults_do_not_repeat_lab_values():
    """The values the lab config owns (Perforce port, depot and paths; share layout; versions) have no role
    default: site.yml hands them in, so a role run without them fails its argument spec instead of
    quietly using a second copy."""
    lab_owned = {
        "perforce": {"perforce_version", "perforce_port", "perforce_ssl", "perforce_data_root", "perforce_depot",
                     "perforce_projects_path", "perforce_service_user"},
        "samba": {"samba_share_name", "samba_share_path", "samba_share_user", "samba_share_uid", "samba_users"},
        "common": {"common_admin_user", "common_admin_ssh_keys"},
        "airflow": {"airflow_version", "airflow_k8s_namespace", "airflow_k8s_conn_id", "airflow_notify_conn_id"},
        "kube_node": {"kube_node_version", "kube_node_containerd_version", "kube_node_runc_version",
                      "kube_node_cni_plugins_version", "kube_node_crictl_version", "kube_node_pause_image",
                      "kube_node_registry_port"},
        "kube_control_plane": {"kube_control_plane_version", "kube_control_plane_pod_subnet",
                               "kube_control_plane_service_subnet", "kube_control_plane_kube_router_image"},
        "kube_worker": {"kube_worker_control_plane_address", "kube_worker_control_plane_host"},
    }  # fmt: skip
    site = (ROOT / "ansible" / "site.yml").read_text()
    for role, names in lab_owned.items():
        defaults = yaml.safe_load((ROLES / role / "defaults" / "main.yml").read_text()) or {}
        options = yaml.safe_load((ROLES / role / "meta" / "argument_specs.yml").read_text())["argument_specs"]
        for name in names:
            assert name not in defaults, f"{role}: {name} repeats a lab value in defaults/main.yml"
            assert options["main"]["options"][name].get("required") is True, f"{role}: {name} is not required"
            assert re.search(rf"^\s+{name}:(\s|$)", site, re.M), f"site.yml does not map {name}"
