"""The airflow role on the Airflow host: units up, PostgreSQL private, the API served over TLS with a certificate
from the lab CA, healthy and locked (the FAB auth manager: no plaintext password file), the repo's DAGs loaded
without import errors (checked over the network, as a user would, verifying with the lab CA alone)."""

from __future__ import annotations

import json
import re
import shlex
import socket
import ssl
import time
import uuid
from pathlib import Path

import pytest
import requests
import yaml

from tests.hosts.cli_output import json_list
from tests.hosts.lab_http import lab_ca_session

pytestmark = pytest.mark.group("airflow")

COMPONENTS = ("api-server", "scheduler", "dag-processor", "triggerer")
REPO_DAGS = Path(__file__).resolve().parents[2] / "dags"
API_PORT = 8080
DEFINES_DAG = re.compile(r"(@dag\b|\bDAG\()")


@pytest.fixture(scope="module")
def lab_ca_file(lab_secrets, tmp_path_factory) -> str:
    """The lab CA's certificate (public), as `make lab-ca-cert` writes it for clients."""
    from renderlab.lab import lab_ca

    path = tmp_path_factory.mktemp("ca") / "lab-ca.crt"
    path.write_text(lab_ca.ca_cert(lab_secrets["renderlab_lab_ca"]))
    return str(path)


@pytest.fixture(scope="module")
def api(lab_vars) -> str:
    return f"https://{lab_vars['ansible_host']}:{API_PORT}"


@pytest.fixture(scope="module")
def http(lab_ca_file) -> requests.Session:
    """Every request verifies the server against the lab CA alone."""
    return lab_ca_session(lab_ca_file)


@pytest.fixture(scope="module")
def token(api, http, lab_secrets) -> str:
    r = http.post(
        f"{api}/auth/token",
        json={"username": "admin", "password": lab_secrets["renderlab_airflow_admin_password"]},
        timeout=30,
    )
    assert r.status_code in (200, 201), f"admin login failed: {r.status_code} {r.text[:200]}"
    return r.json()["access_token"]


def test_units_active_and_enabled(host):
    for name in ("postgresql", *(f"airflow-{c}" for c in COMPONENTS)):
        service = host.service(name)
        assert service.is_running, f"{name} is not running"
        assert service.is_enabled, f"{name} is not enabled"


def test_the_dag_gets_the_inventorys_pipeline_settings_unchanged(host, lab_vars):
    """The Variable the DAG reads is exactly the structure the inventory carries (no Jinja rebuild)."""
    with host.sudo():
        env = host.file("/etc/airflow/airflow.env").content_string
    (line,) = [ln for ln in env.splitlines() if ln.startswith("AIRFLOW_VAR_RENDERLAB=")]
    (assignment,) = shlex.split(line)
    # The local lab's inventory alone carries overrides (its file:// depot: nspawn_lab/share_folder.py).
    expected = {**lab_vars["renderlab_pipeline_settings"], **lab_vars.get("renderlab_pipeline_overrides", {})}
    assert json.loads(assignment.split("=", 1)[1]) == expected


def test_the_share_is_mounted_at_share_root_as_its_one_owner(host, lab_vars):
    """The DAG's tasks write run records under share_root as the airflow user, whose uid is the share's; the
    mounted folder stays the share's own (a role task once re-owned it to root 0755 on every later run)."""
    root, uid = lab_vars["renderlab_pipeline_settings"]["share_root"], lab_vars["renderlab_share_uid"]
    assert host.mount_point(root).exists, f"nothing mounted at {root}"
    assert host.user("airflow").uid == uid
    name = f"{root}/testinfra-{uuid.uuid4().hex}"
    with host.sudo():
        assert host.file(root).uid == uid
        try:
            with host.sudo("airflow"):
                host.check_output(f"echo record > {name}")
            assert host.file(name).uid == uid and host.file(name).content_string == "record\n"
        finally:
            host.run(f"rm -f {name}")


def test_the_release_holds_only_the_code_the_dag_runs(host):
    def ls(path: str) -> list[str]:
        return sorted(n for n in host.check_output(f"ls {path}").split() if n != "__pycache__")

    # What the role says it ships (its default `airflow_repo_packages`) and nothing more: dags/ plus those.
    defaults = yaml.safe_load((REPO_DAGS.parent / "ansible/roles/airflow/defaults/main.yml").read_text())
    packages = defaults["airflow_repo_packages"]
    tops = sorted({p.split("/")[0] for p in packages})
    assert ls("/opt/airflow/app") == sorted(["dags", *tops])
    for top in tops:
        assert ls(f"/opt/airflow/app/{top}") == sorted(
            p.split("/", 1)[1] for p in packages if p.startswith(f"{top}/")
        )


def test_postgres_listens_on_loopback_only(host):
    assert host.socket("tcp://127.0.0.1:5432").is_listening
    assert not host.socket("tcp://0.0.0.0:5432").is_listening


def test_config_is_local_executor_capped_and_private(host):
    with host.sudo():
        cfg = host.file("/opt/airflow/airflow.cfg")
        assert (cfg.user, cfg.group, cfg.mode) == ("root", "airflow", 0o640)
        # The FAB auth manager keeps users in the database (hashed): no password file the service could rewrite.
        assert not host.file("/etc/airflow/passwords.json").exists
        key = host.file("/etc/airflow/tls/airflow.key")
        assert (key.user, key.group, key.mode) == ("root", "airflow", 0o640)
    with host.sudo("airflow"):
        for key, want in (("core executor", "LocalExecutor"), ("core parallelism", "8")):
            out = host.check_output(f"/usr/local/bin/airflow config get-value {key} 2>/dev/null")
            assert out.strip().splitlines()[-1] == want, key


def test_venv_holds_the_pinned_airflow(host, lab_vars):
    out = host.check_output("/opt/airflow/venv/bin/python -c 'import airflow; print(airflow.__version__)'")
    assert out.strip().splitlines()[-1] == lab_vars["renderlab_airflow_version"]


def test_api_serves_tls_with_a_lab_certificate_for_its_names(api, lab_vars, lab_ca_file):
    """Verified with the lab CA alone, for the name and address the lab config gives; plain HTTP gets nothing."""
    sans = lab_vars["renderlab_tls_sans"]["airflow"]
    assert lab_vars["ansible_host"] in sans
    ctx = ssl.create_default_context(cafile=lab_ca_file)
    with (
        socket.create_connection((lab_vars["ansible_host"], API_PORT), timeout=30) as raw,
        ctx.wrap_socket(raw, server_hostname=lab_vars["ansible_host"]) as tls,
    ):
        cert = tls.getpeercert()
        assert tls.version() in ("TLSv1.2", "TLSv1.3")
    names = {v for k, v in cert["subjectAltName"]}
    assert names == set(sans)
    with pytest.raises(requests.exceptions.SSLError):  # the system store does not hold the lab CA
        requests.get(f"{api}/api/v2/monitor/health", timeout=30)
    with pytest.raises(requests.exceptions.ConnectionError):  # no plain HTTP on the port
        requests.get(f"http://{lab_vars['ansible_host']}:{API_PORT}/api/v2/monitor/health", timeout=30)


def test_api_healthy_over_the_network(api, http):
    health = http.get(f"{api}/api/v2/monitor/health", timeout=30).json()
    for part in ("metadatabase", "scheduler", "dag_processor", "triggerer"):
        assert health[part]["status"] == "healthy", (part, health[part])


def test_the_admin_is_a_database_user_with_the_admin_role(host):
    with host.sudo("airflow"):
        out = host.check_output("/usr/local/bin/airflow users list -o json 2>/dev/null")
    users = json_list(out)
    assert [(u["username"], u["roles"]) for u in users] == [("admin", ["Admin"])]


def test_api_requires_auth(api, http, lab_secrets):
    assert http.get(f"{api}/api/v2/dags", timeout=30).status_code == 401
    bad = http.post(
        f"{api}/auth/token",
        json={"username": "admin", "password": lab_secrets["renderlab_airflow_admin_password"] + "x"},
        timeout=30,
    )
    assert bad.status_code == 401
    forged = http.get(f"{api}/api/v2/dags", headers={"Authorization": "Bearer forged"}, timeout=30)
    # An unverifiable token is refused (Airflow answers 403 for a bad signature, 401 for none at all).
    assert forged.status_code in (401, 403)


def test_deployed_dags_match_the_repo(host):
    repo = sorted(p.name for p in REPO_DAGS.glob("*.py"))
    deployed = host.check_output("ls /opt/airflow/app/dags").split()
    assert sorted(n for n in deployed if n.endswith(".py")) == repo


def test_dags_loaded_without_import_errors(api, http, token):
    # The files that define a DAG (helper modules beside them need not), as the role's own check picks them.
    files = sorted(p.name for p in REPO_DAGS.glob("*.py") if DEFINES_DAG.search(p.read_text()))
    headers = {"Authorization": f"Bearer {token}"}
    # The DAG processor scans every 30 s; give a fresh deploy one scan plus parsing time.
    deadline = time.monotonic() + 90
    while True:
        errors = http.get(f"{api}/api/v2/importErrors", headers=headers, timeout=30).json()
        assert errors["total_entries"] == 0, [
            e["filename"] + ": " + e["stack_trace"] for e in errors["import_errors"]
        ]
        dags = http.get(f"{api}/api/v2/dags", headers=headers, timeout=30).json()["dags"]
        loaded = {Path(d["fileloc"]).name for d in dags}
        if set(files) <= loaded or time.monotonic() > deadline:
            break
        time.sleep(5)
    assert set(files) <= loaded, f"DAG files not loaded: {sorted(set(files) - loaded)}"
    if not files:
        pytest.skip("dags/ holds no DAG file yet: nothing beyond zero import errors to check")


HOOK_PROBE = """
from airflow.providers.cncf.kubernetes.hooks.kubernetes import KubernetesHook
hook = KubernetesHook(conn_id="kubernetes_default")
client = hook.get_conn()
print(client.configuration.host, hook.get_namespace(), bool(client.configuration.api_key))
"""


def test_k8s_connection_builds_the_launchers_client(host, lab_vars):
    with host.sudo():
        if not host.file("/etc/airflow/connections.env").exists:
            pytest.skip(
                "no Kubernetes connection yet: run site.yml --tags k8s_connection after the cluster layer"
            )
        with host.sudo("airflow"):
            out = host.check_output(
                "set -a; . /etc/airflow/airflow.env; . /etc/airflow/connections.env; set +a; "
                f"/opt/airflow/venv/bin/python -c '{HOOK_PROBE}' 2>/dev/null"
            )
    server, namespace, has_token = out.strip().splitlines()[-1].split()
    assert server.startswith("https://") and server.endswith(":6443")
    assert namespace == lab_vars["renderlab_pipeline_namespace"]
    assert has_token == "True"
