"""Seams between the layers, no cluster: every value the lab config determines, followed from the stack file
to the command line that finally consumes it.

stack file (non-default knobs, SSL Perforce, a webhook) -> inventory (Python) -> site.yml's airflow play vars
and the role's airflow.env.j2, templated by Ansible's own Templar -> the Airflow Variable -> the settings
model -> every Job the DAG submits -> each Job's command line through its own CLI's argparse parser.
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import subprocess
import sys
from pathlib import Path, PurePosixPath

import pytest
import yaml

from blender_scripts import render as render_cli
from infra import manifests
from renderlab.base.errors import CommandError
from renderlab.base.share import SHARE_MOUNT, ShareLayout
from renderlab.jobs import assemble as assemble_cli
from renderlab.jobs import build_step as build_cli
from renderlab.jobs import validate as validate_cli
from renderlab.jobs.fetch import __main__ as fetch_cli
from renderlab.jobs.fetch.source import P4Source, parse_source
from renderlab.lab import cluster_names, host_secrets, image_refs
from renderlab.lab.config import load
from renderlab.lab.inventory import inventory
from renderlab.pipeline import notify, run_plan, settings, steps
from renderlab.pipeline.backends import kubernetes as kb
from renderlab.workstation import images
from tests.example_stack import own
from tests.pipeline.conftest import REPO
from tests.pipeline.dag_jobs import dag_specs

ROLE = REPO / "ansible" / "roles" / "airflow"
WEBHOOK = "https://hooks.example.test/services/T000/B000/secret-token"
RECORDED = {
    "blender": {"tag": "0123456789abcdef"},
    "fetch": {"tag": "fedcba9876543210", "digest": "sha256:" + "1" * 64},
}
# Every knob away from its default, so that a value dropped anywhere on the way shows.
KNOBS = {
    "fps": 24,
    "samples": 7,
    "preset": "hd",
    "frames_per_chunk": 5,
    "notify": "webhook",
    "namespace": "renders",
    "cpu": "3",
    "memory": "6Gi",
}
CLIS = {
    "renderlab.jobs.fetch": fetch_cli.build_parser,
    "renderlab.jobs.build_step": build_cli.build_parser,
    "blender_scripts.render": render_cli.build_parser,
    "renderlab.jobs.assemble": assemble_cli.build_parser,
    "renderlab.jobs.validate": validate_cli.build_parser,
}


def _stack(tmp_path: Path) -> Path:
    data = own()  # the example with the test's own token and key
    cfg = data["config"]
    cfg["renderlab:pipeline"].update(KNOBS)
    cfg["renderlab:pipeline"]["registry"]["node_port"] = 31234
    cfg["renderlab:perforce"].update(ssl=True, port=1777)
    cfg["renderlab:share"]["uid"] = 2345
    cfg["renderlab:notify_webhook_url"] = {"secure": "v1:encrypted-webhook-url"}
    path = tmp_path / "Pulumi.seam.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def _templar(variables: dict):
    from ansible.parsing.dataloader import DataLoader
    from ansible.template import Templar

    return Templar(loader=DataLoader(), variables=variables)


def site_airflow_vars(inv: dict, secrets: dict[str, str]) -> dict:
    """The airflow role's variables as site.yml hands them on: the play's role vars over the role defaults and
    the inventory, through Ansible's Templar, plus the role's own vars/main.yml."""
    plays = yaml.safe_load((REPO / "ansible" / "site.yml").read_text())
    (play,) = [p for p in plays if p["hosts"] == "airflow" and p.get("roles")]
    (role,) = [r for r in play["roles"] if r["role"] == "airflow"]
    groups = {g: list(c["hosts"]) for g, c in inv["all"]["children"].items()}
    host = groups["airflow"][0]
    hostvars = inv["all"]["children"]["airflow"]["hosts"][host]
    defaults = yaml.safe_load((ROLE / "defaults" / "main.yml").read_text())
    variables = {
        **defaults,
        **inv["all"]["vars"],
        **hostvars,
        **secrets,
        "groups": groups,
        "inventory_hostname": host,
        "playbook_dir": str(REPO / "ansible"),
        "ansible_managed": "Ansible managed",
    }
    role_vars = _templar(variables).template(role["vars"])
    merged = {**variables, **role_vars}
    internal = yaml.safe_load((ROLE / "vars" / "main.yml").read_text())
    return {**merged, **_templar(merged).template(internal)}


def role_template(variables: dict, name: str) -> str:
    return _templar(variables).template((ROLE / "templates" / name).read_text())


def site_airflow_env(inv: dict, secrets: dict[str, str]) -> dict[str, str]:
    """/etc/airflow/airflow.env as site.yml writes it: the role's template over site_airflow_vars, through
    Ansible's Templar; parsed as systemd reads it."""
    text = role_template(site_airflow_vars(inv, secrets), "airflow.env.j2")
    env = {}
    for line in text.splitlines():
        if line.strip() and not line.startswith("#"):
            (assignment,) = shlex.split(line)  # systemd's EnvironmentFile quoting: one word per line
            key, value = assignment.split("=", 1)
            env[key] = value
    return env


@pytest.fixture
def lab(tmp_path):
    stack = _stack(tmp_path)
    config = load(stack)
    inv = inventory(config, images=image_refs.pull_refs(config, RECORDED))
    secrets = {**host_secrets.generate(), host_secrets.WEBHOOK_URL: WEBHOOK}
    env = site_airflow_env(inv, secrets)
    return config, inv, env


def test_the_airflow_variable_is_the_inventorys_structure_unchanged(lab, monkeypatch):
    config, inv, env = lab
    variable = json.loads(env["AIRFLOW_VAR_RENDERLAB"])
    assert variable == inv["all"]["vars"]["renderlab_pipeline_settings"]
    monkeypatch.setenv("AIRFLOW_VAR_RENDERLAB", env["AIRFLOW_VAR_RENDERLAB"])
    s = settings.load()
    assert {k: getattr(s, k) for k in KNOBS} == KNOBS
    assert s.run_as_uid == 2345 and s.backend == "kubernetes"
    assert s.depot == "p4://ssl:10.20.0.14:1777//depot/songs"
    assert s.share_pvc == cluster_names.SHARE_PVC and s.p4_secret == cluster_names.P4_SECRET
    # The render and build Jobs get the stack file's cpu and memory (they were fixed at 2 / 4Gi).
    from types import SimpleNamespace

    from renderlab.pipeline import steps

    for kind in ("render", "build"):
        res = steps._resources(SimpleNamespace(settings=s), kind)
        assert (res.cpu, res.memory) == ("3", "6Gi"), kind


def test_the_webhook_url_reaches_the_notifier(lab, monkeypatch):
    _, inv, env = lab
    monkeypatch.setenv("AIRFLOW_VAR_RENDERLAB", env["AIRFLOW_VAR_RENDERLAB"])
    s = settings.load()
    key = f"AIRFLOW_CONN_{s.notify_conn_id.upper()}"
    assert env[key] == WEBHOOK
    monkeypatch.setenv(key, env[key])
    assert notify.webhook_url(s.notify_conn_id) == WEBHOOK
    # The secret stays out of the inventory (it travels in the 0600 host secrets file only).
    assert WEBHOOK not in json.dumps(inv)


def _unit_settings(text: str) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for line in text.splitlines():
        if "=" in line and not line.startswith("#"):
            key, value = line.split("=", 1)
            out.setdefault(key, []).append(value)
    return out


def test_the_airflow_hosts_share_is_mounted_where_the_dag_writes_run_records(lab, monkeypatch):
    """One owner for the Airflow host's view of the share: the lab config derives share_root once; the Variable
    carries it to the DAG, site.yml maps the same value onto the airflow role's mount, and the mount is the
    very share the render pods mount."""
    config, inv, env = lab
    monkeypatch.setenv("AIRFLOW_VAR_RENDERLAB", env["AIRFLOW_VAR_RENDERLAB"])
    s = settings.load()
    secrets = {**host_secrets.generate(), host_secrets.WEBHOOK_URL: WEBHOOK}
    role = site_airflow_vars(inv, secrets)
    assert s.share_root == role["airflow_share_mount"] == f"/mnt/{config.share.name}"
    # The run folder the notifications name (and their records' folder) lies under that mount.
    plan = run_plan.resolve_run({"params": {"song": "s"}, "run_id": "manual__1"}, s)
    assert PurePosixPath(plan.run_folder).is_relative_to(role["airflow_share_mount"])
    mount = _unit_settings(role_template(role, "share.mount.j2"))
    assert mount["Where"] == [s.share_root] and mount["Type"] == ["cifs"]
    assert mount["What"] == [manifests.share_source(config)]  # the share the pods' PersistentVolume mounts
    options = dict(o.partition("=")[::2] for o in mount["Options"][0].split(","))
    assert options["credentials"] == role["airflow_share_credentials"]
    assert options["uid"] == str(config.share.uid) == str(role["airflow_uid"])  # the share's one identity
    assert secrets["renderlab_share_password"] not in role_template(role, "share.mount.j2")
    # systemd only mounts a unit named after its path, and every Airflow unit waits for it.
    escape = shutil.which("systemd-escape")
    if escape:
        named = subprocess.run([escape, "--path", "--suffix=mount", s.share_root], capture_output=True,
                               text=True, check=True).stdout.strip()  # fmt: skip
        assert role["airflow_share_unit"] == named
    service = _unit_settings(role_template({**role, "item": "scheduler"}, "airflow.service.j2"))
    assert service["RequiresMountsFor"] == [s.share_root]


def test_the_local_labs_airflow_binds_the_share_folder_and_reads_a_file_depot_on_it(lab, monkeypatch):
    from renderlab.workstation.nspawn_lab import share_folder

    _, inv, env = lab
    inv["all"]["vars"].update(share_folder.inventory_vars())  # what the local lab's inventory adds
    role = site_airflow_vars(inv, host_secrets.generate())
    mount = _unit_settings(role_template(role, "share.mount.j2"))
    assert mount["What"] == [share_folder.FOLDER] and mount["Type"] == ["none"]
    assert mount["Options"] == ["bind"] and mount["Where"] == [role["airflow_share_mount"]]
    # The Variable differs from the production one in the depot only: a file:// folder on the share, read by
    # the fetch Job where its pod mounts the share.
    monkeypatch.setenv("AIRFLOW_VAR_RENDERLAB", json.dumps(role["airflow_pipeline_settings"]))
    s = settings.load()
    production = json.loads(env["AIRFLOW_VAR_RENDERLAB"])
    assert {k for k, v in s.model_dump(mode="json").items() if production.get(k) != v} == {"depot"}
    assert s.share_root == role["airflow_share_mount"]
    source = parse_source(steps.fetch_source(s.depot, "demo", "latest"))
    assert str(source.root) == f"{SHARE_MOUNT}/{share_folder.DEPOT}/demo"


FILE_MODULES = {"file", "copy", "template"}  # ansible.builtin.* tasks that own, or write to, their path/dest


def _file_tasks(tasks: list) -> list[dict]:
    out = []
    for task in tasks or []:
        out += (
            _file_tasks(task.get("block")) + _file_tasks(task.get("rescue")) + _file_tasks(task.get("always"))
        )
        for key, args in task.items():
            if key.removeprefix("ansible.builtin.") in FILE_MODULES and isinstance(args, dict):
                out.append({"name": task.get("name", ""), "loop": task.get("loop"), **args})
    return out


@pytest.mark.parametrize("bind", [False, True], ids=["cifs", "local-lab-bind"])
def test_no_airflow_role_task_owns_the_mounted_share(lab, bind):
    """Once mounted, the share's path is the share's own folder (owner the share's uid, setgid 2770 on the
    storage host; the local lab binds that very folder). A file task there ran again on the next site.yml and
    re-owned it to root 0755: changed=1 on every run, and Samba's forced user could no longer write."""
    from ansible.errors import AnsibleUndefinedVariable

    from renderlab.workstation.nspawn_lab import share_folder

    _, inv, _ = lab
    if bind:
        inv["all"]["vars"].update(share_folder.inventory_vars())
    role = site_airflow_vars(inv, host_secrets.generate())
    mount = PurePosixPath(role["airflow_share_mount"])
    touched, checked = [], 0
    for path in sorted((ROLE / "tasks").glob("*.yml")):
        for task in _file_tasks(yaml.safe_load(path.read_text())):
            target = task.get("path") or task.get("dest")
            loop = _templar(role).template(task["loop"]) if task["loop"] else [None]
            for item in loop:
                try:
                    resolved = _templar({**role, "item": item}).template(target)
                except AnsibleUndefinedVariable:
                    continue  # a registered result or a fact: not a path known before a run
                checked += 1
                if PurePosixPath(resolved).is_relative_to(mount):  # the mount path itself too
                    touched.append(f"{path.name}: {task['name']}: {resolved}")
    assert checked >= 18, checked  # every file task of the role resolved (the registered pg path aside)
    assert touched == []


def test_every_job_the_dag_submits_parses_with_its_own_cli(lab, monkeypatch, no_cluster):
    config, _, env = lab
    monkeypatch.setenv("AIRFLOW_VAR_RENDERLAB", env["AIRFLOW_VAR_RENDERLAB"])
    s = settings.load()
    specs, plan = dag_specs(s, with_plan=True)
    run_id, song, lay = plan["run_id"], plan["song"], ShareLayout(PurePosixPath("."))
    p4_secret = next(
        o
        for o in manifests.secrets(
            config, {"renderlab_p4_service_password": "x", "renderlab_share_password": "y"}
        )
        if o["metadata"]["name"] == s.p4_secret
    )
    assert p4_secret["metadata"]["namespace"] == s.namespace
    refs = image_refs.pull_refs(config, RECORDED)
    seen = set()
    for spec in specs:
        python, dash_m, module, *args = spec.command
        assert (python, dash_m) == ("python", "-m") and module in CLIS, spec.command
        seen.add(module)
        ns = CLIS[module]().parse_args(args)  # argparse exits on anything it does not accept
        # The image is exactly what `make images` recorded, and it contains the module the Job runs.
        (container,) = kb.build_job(spec, s).spec.template.spec.containers
        assert container.image == refs[spec.image] == s.images[spec.image]
        module_file = module.replace(".", "/") + (
            "/__main__.py" if module == "renderlab.jobs.fetch" else ".py"
        )
        assert module_file in images.context_files(spec.image)  # exactly what the Dockerfile COPYs
        if module == "renderlab.jobs.fetch":
            source = parse_source(ns.source)
            assert isinstance(source, P4Source)
            assert (source.port, source.depot_path, source.change) == (
                "ssl:10.20.0.14:1777",
                f"//depot/songs/{song}/...",
                42,
            )
            assert ns.dest == str(lay.assets(song))
            for ref in spec.secrets:  # every Secret key the Job reads exists in the cluster layer's Secret
                assert ref.secret == s.p4_secret and ref.key in p4_secret["stringData"]
            assert "P4TRUST_FINGERPRINT" in {r.env for r in spec.secrets}  # SSL: the trust is checked
        elif module == "renderlab.jobs.build_step":
            assert (str(ns.project), str(ns.out), ns.fps) == (
                str(lay.assets(song)),
                str(lay.scene(run_id)),
                24,
            )
        elif module == "blender_scripts.render":
            assert (ns.preset, ns.samples) == ("hd", 7)
            assert str(ns.out) in {str(lay.frames(run_id, v)) for v in ("main", "loop")}
        elif module == "renderlab.jobs.assemble":
            assert str(ns.frames) in {str(lay.frames(run_id, v)) for v in ("main", "loop")}
            assert str(ns.out.parent) == str(lay.video(run_id)) and ns.fps == 24
        else:
            assert str(ns.out.parent) == str(lay.report(run_id))
            for variant in json.loads(ns.spec)["variants"].values():
                assert variant["frames"] in {str(lay.frames(run_id, v)) for v in ("main", "loop")}
    assert seen == set(CLIS)


def _copy(paths: list[str], dest: Path) -> None:
    for rel in paths:
        src = REPO / rel
        if src.is_dir():
            shutil.copytree(src, dest / rel, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        else:
            (dest / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dest / rel)


def _imports(root: Path, code: str) -> subprocess.CompletedProcess:
    # Only `root` (plus the venv's site-packages): the repository itself is not importable.
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "AIRFLOW_VAR"))}
    env["PYTHONPATH"] = str(root)
    return subprocess.run(
        [sys.executable, "-c", code], cwd=root, env=env, capture_output=True, text=True, check=False
    )


@pytest.mark.slow
def test_the_airflow_bundle_holds_exactly_the_code_the_dag_runs(tmp_path):
    defaults = yaml.safe_load((ROLE / "defaults" / "main.yml").read_text())
    _copy(["dags", *defaults["airflow_repo_packages"]], tmp_path)
    code = (
        "import importlib, pkgutil, runpy, renderlab.pipeline as p\n"
        "for m in pkgutil.walk_packages(p.__path__, 'renderlab.pipeline.'): importlib.import_module(m.name)\n"
        "runpy.run_path('dags/render.py')\n"
        "import importlib.util as u\n"
        "assert u.find_spec('renderlab.lab') is None and u.find_spec('renderlab.workstation') is None\n"
        "assert u.find_spec('renderlab.jobs') is None and u.find_spec('blender_scripts') is None\n"
    )
    proc = _imports(tmp_path, code)
    assert proc.returncode == 0, proc.stderr[-3000:]


@pytest.mark.parametrize(
    ("image", "modules"),
    [
        ("fetch", ["renderlab.jobs.fetch.__main__"]),
        ("blender", ["renderlab.jobs.build_step", "renderlab.jobs.assemble", "renderlab.jobs.validate",
                     "blender_scripts.render", "blender_scripts.build"]),
    ],
)  # fmt: skip
def test_each_images_inputs_hold_the_code_its_jobs_run(tmp_path, image, modules):
    _copy([c for c in images.context_files(image) if c.endswith(".py")], tmp_path)
    code = "import importlib\n" + "".join(f"importlib.import_module({m!r})\n" for m in modules)
    code += "import importlib.util as u\nassert u.find_spec('renderlab.pipeline') is None\n"
    proc = _imports(tmp_path, code)
    assert proc.returncode == 0, proc.stderr[-3000:]


def test_the_jobs_image_is_the_one_make_images_built(tmp_path, monkeypatch, no_cluster):
    """`make images` (engine calls recorded, not run) -> its record -> the inventory's settings -> the Job."""
    monkeypatch.setattr(image_refs, "RECORDS", tmp_path / "records")
    monkeypatch.setattr(images, "engine", lambda: "podman")
    base = "localhost/renderlab-base"
    facts = {"{{.Id}}": "sha256:" + "1" * 64, "{{.Digest}}": "sha256:" + "2" * 64, "{{.Size}}": "42"}
    ran = []

    def engine_call(tool, *args, capture=True, check=True):
        ran.append(args)
        out = ""
        if args[:2] == ("image", "exists"):  # only the base is there: every image gets built
            return subprocess.CompletedProcess(args, 0 if args[2] == base else 1, "", "")
        if args[:3] == ("image", "inspect", "--format"):
            out = facts[args[3]]
        if args[0] == "push":  # the registry's manifest digest, as podman writes it
            Path(args[args.index("--digestfile") + 1]).write_text(f"sha256:{args[-1][-1] * 64}")
        return subprocess.CompletedProcess(args, 0, out, "")

    monkeypatch.setattr(images, "_run", engine_call)
    stack = _stack(tmp_path)
    with pytest.raises(CommandError, match="no lab CA and registry login"):
        images.build(["fetch"], str(stack), push="always", base=base)
    secrets_file = tmp_path / "secrets.yml"
    host_secrets.write(secrets_file, host_secrets.generate())
    built = images.build(
        ["blender", "fetch"], str(stack), push="always", base=base, secrets_file=secrets_file
    )
    config = load(stack)
    pushes = [args for args in ran if args[0] == "push"]
    pushed = {args[-1].removeprefix("docker://") for args in pushes}
    assert pushed == {image_refs.push_ref(config, name, b["tag"]) for name, b in built.items()}
    # Over TLS verified with the lab CA, logged in from a file: the password is never on the command line.
    password = host_secrets.read(secrets_file)["renderlab_registry_password"]
    for args in pushes:
        assert "--cert-dir" in args and "--authfile" in args
        assert not any("tls-verify" in a for a in args) and not any(password in a for a in args)
    derived = inventory(config, images=image_refs.pull_refs(config, image_refs.recorded(stack)))
    s = settings.Settings.model_validate(derived["all"]["vars"]["renderlab_pipeline_settings"])
    expected = {
        f"{image_refs.pull_registry(config)}/{image_refs.repository(name)}:{b['tag']}@{b['digest']}"
        for name, b in built.items()
    }
    used = set()
    for spec in dag_specs(s):
        (container,) = kb.build_job(spec, s).spec.template.spec.containers
        # The tag and the pushed digest of what was built; the registry host is the nodes' (loopback) one.
        assert container.image in expected
        used.add(container.image)
    assert used == expected
