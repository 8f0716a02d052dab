"""The lab's Airflow as the rehearsal reaches it: the way a user's `make render` does (https:// to the Airflow
host, the lab CA's certificate that `make lab-ca-cert` writes as the only trust, the admin's generated password),
and what its host must carry before a run can start there: the Variable naming the Jobs' images as
`make images` recorded them, and the Kubernetes connection (site.yml's `k8s_connection` step).
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import yaml

from renderlab.lab import firewall, host_secrets, lab_ca
from renderlab.lab.config import LabConfig
from renderlab.workstation import trigger
from renderlab.workstation.nspawn_lab.options import ROOT

ROLE_DEFAULTS = ROOT / "ansible" / "roles" / "airflow" / "defaults" / "main.yml"
CA_FILE = "lab-ca.crt"  # beside the lab's other state, as `make lab-ca-cert` writes it for a lab of VMs
ENV_FILE = "/etc/airflow/airflow.env"  # the airflow role's (tasks/config.yml)
CONNECTIONS_FILE = "/etc/airflow/connections.env"  # site.yml's k8s_connection step (tasks/k8s_connection.yml)
VARIABLE_LINE = "AIRFLOW_VAR_RENDERLAB="  # the Variable `renderlab` in ENV_FILE (templates/airflow.env.j2)


def admin_user() -> str:
    """The admin the airflow role creates (its default: site.yml does not override it)."""
    return yaml.safe_load(ROLE_DEFAULTS.read_text(encoding="utf-8"))["airflow_admin_user"]


def url(config: LabConfig) -> str:
    (host,) = config.hosts_by_role("airflow")
    return f"https://{config.address(host)}:{firewall.AIRFLOW_API}"


def api(config: LabConfig, state: Path, secrets: Path) -> trigger.Api:
    """`make lab-ca-cert` into the lab's state folder, then `make render`'s own client with that CA file."""
    ca_file = state / CA_FILE
    rc = lab_ca.main(["ca-cert", "-f", str(secrets), "-o", str(ca_file)])  # the certificate only, 0644
    if rc != 0:
        raise trigger.TriggerError(f"`python -m renderlab.lab.lab_ca ca-cert -f {secrets}` exited {rc}")
    password = host_secrets.read(secrets)["renderlab_airflow_admin_password"]
    return trigger.connect(url(config), admin_user(), password, str(ca_file))


def variable_images(grep_output: str) -> dict[str, str] | None:
    """The images the Airflow host's Variable names, from `grep -F VARIABLE_LINE ENV_FILE`'s output (only that
    line leaves the host: the file may hold the webhook's URL too); None when the Variable is not set."""
    for line in grep_output.splitlines():
        if line.startswith(VARIABLE_LINE):
            value = line.removeprefix(VARIABLE_LINE).strip()
            if len(value) >= 2 and value[0] == value[-1] == "'":
                value = value[1:-1]
            try:
                settings = json.loads(value)
            except json.JSONDecodeError:
                return None
            images = settings.get("images") if isinstance(settings, dict) else None
            return dict(images) if isinstance(images, dict) else None
    return None


def site_tags(variable: dict[str, str] | None, refs: dict[str, str], has_connection: bool) -> list[str]:
    """The site.yml steps the Airflow host still needs: `airflow` when its Variable does not name exactly the
    recorded images (built after site.yml last ran), `k8s_connection` when the connection was never defined."""
    tags = []
    if variable != refs:
        tags.append("airflow")
    if not has_connection:
        tags.append("k8s_connection")
    return tags


def wait_for_dag(api: trigger.Api, deadline_s: float = 300, pause_s: float = 5) -> None:
    """Until the render DAG answers through the API (the k8s_connection step restarts Airflow and does not
    wait for it); the last error when it never does."""
    end = time.monotonic() + deadline_s
    while True:
        try:
            api.get(f"/api/v2/dags/{trigger.DAG_ID}")
            return
        except (trigger.TriggerError, trigger.ApiError):
            if time.monotonic() >= end:
                raise
        time.sleep(pause_s)
