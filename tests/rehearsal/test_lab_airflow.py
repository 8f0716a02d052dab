"""How the rehearsal reaches the lab's Airflow, without a lab: `make lab-ca-cert`'s certificate written into the
lab's state folder (public, the key never), `make render`'s client over https:// trusting it alone; and the
Airflow host's Variable read back from the airflow role's own env template."""

from __future__ import annotations

import json
import stat

import jinja2
import pytest

from renderlab.lab import host_secrets, lab_ca
from renderlab.lab.config import load
from renderlab.lab.pipeline_settings import pipeline_settings
from renderlab.workstation import trigger
from renderlab.workstation.nspawn_lab.options import ROOT
from tests import test_trigger_tls as tls
from tests.rehearsal import lab_airflow

STACK = ROOT / "Pulumi.example.yaml"
REFS = {
    "blender": "127.0.0.1:30500/renderlab-blender:" + "b" * 16,
    "fetch": "127.0.0.1:30500/renderlab-fetch:" + "f" * 16,
}


def test_the_api_is_https_to_the_airflow_host_trusting_the_lab_ca_alone(tmp_path):
    config = load(STACK)
    secrets = tmp_path / "secrets.yml"
    host_secrets.write(secrets, values := host_secrets.generate())
    api = lab_airflow.api(config, tmp_path, secrets)
    (airflow,) = config.hosts_by_role("airflow")
    assert api.url == f"https://{config.address(airflow)}:8080"
    assert (api.user, api.password) == ("admin", values["renderlab_airflow_admin_password"])
    ca_file = tmp_path / lab_airflow.CA_FILE
    assert api.ca_file == str(ca_file)
    assert ca_file.read_text() == lab_ca.ca_cert(values[host_secrets.LAB_CA])
    assert "PRIVATE KEY" not in ca_file.read_text()
    assert stat.S_IMODE(ca_file.stat().st_mode) == 0o644
    # That file verifies a certificate the lab CA issued, as the airflow role's is (on loopback here).
    tls._Airflow.logins = []
    server = tls._serve(tmp_path, values[host_secrets.LAB_CA], "airflow")
    try:
        url = f"https://127.0.0.1:{server.server_address[1]}"
        got = trigger.connect(url, api.user, api.password, api.ca_file).get("/api/v2/x")
        assert got == {"auth": "Bearer tok"}
    finally:
        server.shutdown()
        server.server_close()


def test_a_secrets_file_without_a_lab_ca_fails_with_the_command(tmp_path):
    secrets = tmp_path / "secrets.yml"
    values = host_secrets.generate()
    values[host_secrets.LAB_CA] = "not a bundle"
    secrets.write_text(json.dumps(values))
    with pytest.raises(trigger.TriggerError, match="lab_ca ca-cert -f .* exited 1"):
        lab_airflow.api(load(STACK), tmp_path, secrets)
    assert not (tmp_path / lab_airflow.CA_FILE).exists()


def _env_file(settings: dict) -> str:
    """The airflow role's airflow.env as its template renders it (Ansible's to_json is json.dumps)."""
    env = jinja2.Environment(undefined=jinja2.StrictUndefined)
    env.filters["to_json"] = json.dumps
    template = env.from_string((ROOT / "ansible/roles/airflow/templates/airflow.env.j2").read_text())
    return template.render(
        ansible_managed="managed",
        airflow_home="/opt/airflow",
        airflow_pipeline_settings=settings,
        airflow_notify_webhook_url="https://hooks.invalid/secret",
        airflow_notify_conn_id="renderlab_notify",
    )


def _grep(text: str) -> str:
    """`grep -F VARIABLE_LINE`: the only lines that leave the Airflow host."""
    return "".join(line for line in text.splitlines(keepends=True) if lab_airflow.VARIABLE_LINE in line)


def test_the_variable_names_its_images_as_the_role_writes_them():
    config = load(STACK)
    text = _env_file(pipeline_settings(config, REFS))
    assert "hooks.invalid" not in _grep(text)
    assert lab_airflow.variable_images(_grep(text)) == REFS
    assert lab_airflow.variable_images(_grep(_env_file({}))) is None  # no Variable at all
    older = {**REFS, "fetch": REFS["fetch"][:-1] + "0"}
    seen = lab_airflow.variable_images(_grep(_env_file(pipeline_settings(config, older))))
    assert lab_airflow.site_tags(seen, REFS, has_connection=True) == ["airflow"]
    assert lab_airflow.site_tags(REFS, REFS, has_connection=False) == ["k8s_connection"]
    assert lab_airflow.site_tags(REFS, REFS, has_connection=True) == []
