"""The restore drill (`make lab-restore-drill`): on the local lab, back up, destroy, restore, and prove nothing
was lost.

1. seed: a DAG run, a connection and a variable in Airflow (through its API, as a user would); run folders
   and a gallery page on the share; checksums of every file under runs/ and gallery/ taken first;
2. back up: the hosts' backup service (Airflow's pg_dump, the share's runs and gallery) and the workstation's
   (stack file + host secrets, `python -m renderlab.workstation.backup`);
3. destroy: drop Airflow's database, delete the run folders and the gallery index, remove the host secrets
   file on the workstation;
4. restore with the commands the docs give (`renderlab-restore SET` on the hosts, the workstation restore);
5. prove: the run, the connection and the variable are back in Airflow's API; every restored file is
   byte-identical to its checksum; the gallery index is intact; the secrets file is back.

It prints the backup size (the repositories on the target), the backup time and the restore time.

It works on the lab tests/lab boots in the same session (after test_local_lab), or on a lab already up
(`make lab-local`; it then runs site.yml once so the backup role is in place, and leaves the lab up).
Perforce: p4d is not installed in the local lab (proprietary download), so its set is not part of the drill.
"""

from __future__ import annotations

import json
import os
import secrets
import shlex
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests
import yaml

from renderlab.lab import ansible_unsafe, lab_ca
from renderlab.workstation.nspawn_lab import lifecycle
from renderlab.workstation.nspawn_lab.options import ROOT, LabOptions

pytestmark = [pytest.mark.lab, pytest.mark.slow, pytest.mark.timeout(1800)]

API_PORT = 8080
SHARE_SETS = ("share_runs", "share_gallery")


@pytest.fixture(scope="module")
def drill_lab(request, lab_preflight, booted):
    s = LabOptions.from_env()
    if lifecycle.status(s) and s.prefix not in booted:
        lab = lifecycle.attach(
            s
        )  # up already (make lab-local): the roles in place (site.yml once if not), left up
        if (
            Hosts(lab)
            .run(Hosts(lab).group["airflow"], "test -x /usr/local/sbin/renderlab-restore", check=False)
            .returncode
        ):
            run = lifecycle.run_site(lab, "site-drill.log")
            assert run.real_failures == {}, f"see {run.log}:\n{run.why()}"
        return lab
    run = request.getfixturevalue("first_run")
    assert run.real_failures == {}, f"see {run.log}:\n{run.why()}"
    return request.getfixturevalue("lab")


class Hosts:
    """SSH to the lab's hosts as the admin user, with sudo (what an operator does)."""

    def __init__(self, lab: lifecycle.Lab):
        self.lab = lab
        inv = ansible_unsafe.plain(yaml.safe_load(lab.inventory.read_text()))["all"]
        self.vars = inv["vars"]
        self.group = {g: next(iter(c["hosts"])) for g, c in inv["children"].items() if c["hosts"]}
        self.address = {m.name: m.address for m in lab.machines}

    def run(
        self, host: str, cmd: str, check: bool = True, timeout: float = 900
    ) -> subprocess.CompletedProcess:
        target = f"{self.vars['renderlab_admin_user']}@{self.address[host]}"
        proc = subprocess.run(
            [*self.lab.ssh_base(), target, f"sudo bash -c {shlex.quote(cmd)}"],
            capture_output=True, text=True, timeout=timeout, check=False,
        )  # fmt: skip
        if check:
            assert proc.returncode == 0, f"{host}: {cmd}\n{proc.stdout[-3000:]}{proc.stderr[-3000:]}"
        return proc


class Airflow:
    def __init__(self, address: str, password: str, ca_bundle: str, tmp: Path):
        self.url = f"https://{address}:{API_PORT}"  # TLS from the lab CA (renderlab/lab/lab_ca.py)
        self.password = password
        self.token = ""
        self.ca_file = tmp / "lab-ca.crt"
        self.ca_file.write_text(lab_ca.ca_cert(ca_bundle))

    def login(self, deadline_s: float = 300) -> None:
        end = time.monotonic() + deadline_s
        while True:
            try:
                r = requests.post(
                    f"{self.url}/auth/token",
                    json={"username": "admin", "password": self.password},
                    timeout=10,
                    verify=str(self.ca_file),
                )
                if r.status_code in (200, 201):
                    self.token = r.json()["access_token"]
                    return
            except requests.RequestException:
                pass
            assert time.monotonic() < end, "Airflow's API did not come back"
            time.sleep(3)

    def call(self, method: str, path: str, body: dict | None = None) -> requests.Response:
        return requests.request(
            method,
            f"{self.url}{path}",
            json=body,
            headers={"Authorization": f"Bearer {self.token}"},
            timeout=30,
            verify=str(self.ca_file),
        )

    def get(self, path: str) -> dict:
        r = self.call("GET", path)
        assert r.status_code == 200, (path, r.status_code, r.text[:300])
        return r.json()

    def wait_for_dag(self, dag_id: str, deadline_s: float = 180) -> None:
        end = time.monotonic() + deadline_s
        while self.call("GET", f"/api/v2/dags/{dag_id}").status_code != 200:
            assert time.monotonic() < end, f"DAG {dag_id} never appeared in the API"
            time.sleep(5)


def _checksums(hosts: Hosts, storage: str, share: str) -> dict[str, str]:
    out = hosts.run(
        storage,
        f"cd {shlex.quote(share)} && find runs gallery -type f -print0 | sort -z | xargs -0r sha256sum",
    )
    return {line.split("  ", 1)[1]: line.split("  ", 1)[0] for line in out.stdout.splitlines()}


def _repo_bytes(hosts: Hosts, host: str) -> int:
    out = hosts.run(host, "/usr/local/sbin/renderlab-restic stats --json --mode raw-data")
    return json.loads(out.stdout.splitlines()[-1])["total_size"]


def test_restore_drill(drill_lab, say, tmp_path):
    lab, hosts = drill_lab, Hosts(drill_lab)
    storage, airflow_host = hosts.group["storage"], hosts.group["airflow"]
    share = hosts.vars["renderlab_share_path"]
    lab_secrets = yaml.safe_load(lab.secrets.read_text())
    api = Airflow(
        hosts.address[airflow_host],
        lab_secrets["renderlab_airflow_admin_password"],
        lab_secrets["renderlab_lab_ca"],
        tmp_path,
    )
    api.login()

    # 1. seed -------------------------------------------------------------------------------------------------
    tag = f"drill-{int(time.time())}"
    api.wait_for_dag("render")
    assert api.call("PATCH", "/api/v2/dags/render", {"is_paused": True}).status_code == 200  # nothing runs
    made = api.call(
        "POST", "/api/v2/dags/render/dagRuns", {"dag_run_id": tag, "logical_date": None, "conf": {}}
    )
    assert made.status_code == 200, made.text[:300]
    connection = {"connection_id": f"{tag}-conn", "conn_type": "http", "host": "drill.example.net", "login": "drill",
                  "port": 8443, "password": secrets.token_urlsafe(12), "extra": json.dumps({"verify": True})}  # fmt: skip
    assert api.call("POST", "/api/v2/connections", connection).status_code == 201
    assert api.call("POST", "/api/v2/variables", {"key": f"{tag}-var", "value": "kept"}).status_code == 201
    runs_before = {
        r["dag_run_id"]: r["state"] for r in api.get("/api/v2/dags/render/dagRuns?limit=1000")["dag_runs"]
    }
    assert tag in runs_before
    conn_before = api.get(f"/api/v2/connections/{tag}-conn")
    owner = hosts.vars["renderlab_share_user"]
    hosts.run(
        storage,
        f"""set -e
        cd {shlex.quote(share)}
        for run in {tag}-a {tag}-b; do
          mkdir -p runs/$run/scene runs/$run/frames/main runs/$run/video runs/$run/report gallery/runs/$run
          head -c 3000000 /dev/urandom > runs/$run/scene/song_main.blend
          for n in 1 2 3 4 5 6; do head -c 400000 /dev/urandom > runs/$run/frames/main/frame_00000$n.png; done
          head -c 2000000 /dev/urandom > runs/$run/video/song_main.mp4
          echo '{{"verdict": "pass"}}' > runs/$run/report/validation.json
          echo '{{"run_id": "'$run'"}}' > gallery/runs/$run/run.json
        done
        printf '<html><body><a href="runs/{tag}-a/">{tag}-a</a> <a href="runs/{tag}-b/">{tag}-b</a></body></html>' > gallery/index.html
        chown -R {owner}:{owner} runs gallery""",
    )
    before = _checksums(hosts, storage, share)
    assert len(before) >= 20 and "gallery/index.html" in before

    # 2. back up ----------------------------------------------------------------------------------------------
    t0 = time.monotonic()
    for host in (airflow_host, storage):
        hosts.run(host, "systemctl start renderlab-backup.service")
    ws_repo, ws_password = tmp_path / "workstation-repo", tmp_path / "workstation.password"
    ws = [sys.executable, "-m", "renderlab.workstation.backup"]
    ws_common = ["--repo", str(ws_repo), "--password-file", str(ws_password)]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    subprocess.run([*ws, "backup", *ws_common, "--stack-file", str(lab.stack_file), "--file", str(lab.secrets)],
                   env=env, check=True, capture_output=True)  # fmt: skip
    backup_s = time.monotonic() - t0
    for host in (airflow_host, storage):
        snaps = json.loads(
            hosts.run(host, "/usr/local/sbin/renderlab-restic snapshots --json --latest 1").stdout
        )
        assert {t for s in snaps for t in s.get("tags", [])} >= (
            {"airflow_db"} if host == airflow_host else set(SHARE_SETS)
        )
    size = {host: _repo_bytes(hosts, host) for host in (airflow_host, storage)}
    secrets_bytes = lab.secrets.read_bytes()

    # 3. destroy ----------------------------------------------------------------------------------------------
    units = " ".join(f"airflow-{c}" for c in ("api-server", "scheduler", "dag-processor", "triggerer"))
    hosts.run(airflow_host, f"systemctl stop {units} && runuser -u postgres -- dropdb --force airflow")
    assert (
        "airflow"
        not in hosts.run(
            airflow_host, "runuser -u postgres -- psql -XtAc 'SELECT datname FROM pg_database'"
        ).stdout.split()
    )
    hosts.run(
        storage,
        f"cd {shlex.quote(share)} && rm -rf runs/{tag}-a runs/{tag}-b gallery/runs/{tag}-a gallery/index.html",
    )
    lab.secrets.unlink()
    try:
        # 4. restore ------------------------------------------------------------------------------------------
        t0 = time.monotonic()
        done = subprocess.run(
            [*ws, "restore", *ws_common, "--target", "/"],
            env=env,
            capture_output=True,
            text=True,
            check=False,
        )
        assert done.returncode == 0, done.stderr
        hosts.run(airflow_host, "renderlab-restore airflow_db")
        for name in SHARE_SETS:
            hosts.run(storage, f"renderlab-restore {name}")
        restore_s = time.monotonic() - t0
    finally:
        if not lab.secrets.exists():  # never leave the lab without its secrets, whatever failed
            lab.secrets.write_bytes(secrets_bytes)
            lab.secrets.chmod(0o600)

    # 5. prove ------------------------------------------------------------------------------------------------
    assert lab.secrets.read_bytes() == secrets_bytes
    assert _checksums(hosts, storage, share) == before
    index = hosts.run(storage, f"cat {shlex.quote(share)}/gallery/index.html").stdout
    assert f'href="runs/{tag}-a/"' in index and f'href="runs/{tag}-b/"' in index
    api.login()
    runs_after = {
        r["dag_run_id"]: r["state"] for r in api.get("/api/v2/dags/render/dagRuns?limit=1000")["dag_runs"]
    }
    assert runs_after == runs_before
    conn_after = api.get(f"/api/v2/connections/{tag}-conn")
    assert conn_after == conn_before
    assert api.get(f"/api/v2/variables/{tag}-var")["value"] == "kept"
    say(
        f"\nrestore drill: backup {backup_s:.1f} s, restore {restore_s:.1f} s; repository size "
        + ", ".join(f"{h} {b / 1e3:.0f} kB" for h, b in size.items())
        + f" (share files checked: {len(before)}, Airflow runs: {len(runs_after)}); perforce: not in the drill "
        "(p4d is not installed in the local lab)"
    )
    # The drill's own data goes; the repositories keep the snapshots.
    api.call("DELETE", f"/api/v2/connections/{tag}-conn")
    api.call("DELETE", f"/api/v2/variables/{tag}-var")
    # Its seeded run too: left queued on the paused DAG, the next trigger (which unpauses it) would start a
    # full render of every frame beside the user's run (the lab rehearsal met it, sharing the nodes).
    gone = api.call("DELETE", f"/api/v2/dags/render/dagRuns/{tag}")
    assert gone.status_code == 204, gone.text[:300]
