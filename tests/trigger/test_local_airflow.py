"""`make airflow`'s pieces without starting Airflow: the files it writes (the role's templates, the lab
config's settings, secrets 0600), the song suggestions, and `stop` leaving no process behind (by PID)."""

from __future__ import annotations

import configparser
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from renderlab.lab import config as labconfig
from renderlab.lab.pipeline_settings import pipeline_settings as lab_pipeline_settings
from renderlab.pipeline import depot_songs, settings
from renderlab.workstation import local_airflow
from renderlab.workstation.trigger import _detail, progress_line

REPO = Path(__file__).resolve().parents[2]
CONFIG = REPO / "Pulumi.example.yaml"


@pytest.fixture
def local(tmp_path):
    return local_airflow.prepare(
        tmp_path / "home",
        port=18080,
        config=CONFIG,
        share=tmp_path / "share",
        depot=tmp_path / "depot",
        parallelism=2,
    )


def _cfg(path: Path) -> configparser.ConfigParser:
    cp = configparser.ConfigParser(interpolation=None)
    cp.read(path)
    return cp


def test_airflow_cfg_is_the_roles_template_with_local_values(local):
    cfg = _cfg(local.home / "airflow.cfg")
    # Every key the lab's VM gets (the role's template, rendered with its defaults) is there.
    role = configparser.ConfigParser(interpolation=None)
    values = local_airflow.role_values(
        local_airflow.new_keys(), {"airflow_db_password": "", "airflow_admin_user": "admin"}
    )
    role.read_string(local_airflow.render_role_template("airflow.cfg.j2", values))
    for section in role.sections():
        assert set(role[section]) <= set(cfg[section]), section
    assert cfg["core"]["executor"] == role["core"]["executor"] == "LocalExecutor"
    assert cfg["core"]["auth_manager"].endswith("SimpleAuthManager")
    assert cfg["core"]["parallelism"] == "2" and cfg["api"]["workers"] == role["api"]["workers"]
    assert cfg["core"]["dags_folder"] == str(local.home / "app" / "dags")
    assert (local.home / "app" / "dags" / "render.py").resolve() == REPO / "dags" / "render.py"
    assert cfg["database"]["sql_alchemy_conn"] == f"sqlite:///{local.home / 'airflow.db'}"
    assert cfg["core"]["simple_auth_manager_passwords_file"] == str(local.password_file)
    assert cfg["api"]["host"] == "127.0.0.1" and cfg["api"]["base_url"] == "http://127.0.0.1:18080"
    assert cfg["core"]["execution_api_server_url"] == "http://127.0.0.1:18080/execution/"
    # Log servers off the fixed defaults (8793/8794), so two instances can share a machine.
    assert {cfg["logging"]["worker_log_server_port"], cfg["logging"]["trigger_log_server_port"]} & {
        "8793",
        "8794",
    } == set()
    # The unit environment is the role's: AIRFLOW_HOME, AIRFLOW_CONFIG, PYTHONPATH, the Variable.
    assert local.env["AIRFLOW_HOME"] == str(local.home)
    assert local.env["AIRFLOW_CONFIG"] == str(local.home / "airflow.cfg")
    assert local.env["PYTHONPATH"] == str(local.home / "app")


def test_the_keys_are_independent_and_valid_for_their_consumers(local):
    from cryptography.fernet import Fernet

    cfg = _cfg(local.home / "airflow.cfg")
    Fernet(cfg["core"]["fernet_key"].encode())  # raises if not 32 url-safe base64 bytes
    assert re.fullmatch(r"[A-Za-z0-9]{48}", cfg["api_auth"]["jwt_secret"])
    assert re.fullmatch(r"[A-Za-z0-9]{48}", cfg["api"]["secret_key"])
    keys = json.loads((local.home / "keys.json").read_text())
    assert keys == {
        "airflow_api_secret_key": cfg["api"]["secret_key"],
        "airflow_jwt_secret": cfg["api_auth"]["jwt_secret"],
        "airflow_fernet_key": cfg["core"]["fernet_key"],
    }


def test_secrets_are_private_and_survive_a_restart(local, tmp_path):
    for name in ("airflow.cfg", "passwords.json", "keys.json"):
        assert (local.home / name).stat().st_mode & 0o777 == 0o600, name
    assert local.home.stat().st_mode & 0o777 == 0o700
    password, cfg = local.password, (local.home / "airflow.cfg").read_text()
    again = local_airflow.prepare(
        local.home,
        port=18080,
        config=CONFIG,
        share=tmp_path / "share",
        depot=tmp_path / "depot",
        parallelism=2,
    )
    assert again.password == password and len(password) >= 16
    jwt = re.compile(r"^jwt_secret = .*$", re.M)
    assert jwt.search((local.home / "airflow.cfg").read_text()).group(0) == jwt.search(cfg).group(0)


def test_the_pipeline_settings_are_the_labs_with_the_local_backend_share_and_depot(
    local, tmp_path, monkeypatch
):
    value = json.loads(local.env["AIRFLOW_VAR_RENDERLAB"])
    lab = lab_pipeline_settings(labconfig.load(CONFIG))  # what the lab's Airflow gets via site.yml
    local_keys = {"backend", "share_root", "depot"}
    assert value["backend"] == "local" and value["share_root"] == str(tmp_path / "share")
    assert value["depot"] == f"file://{tmp_path / 'depot'}"
    assert {k: v for k, v in value.items() if k not in local_keys} == {
        k: v for k, v in lab.items() if k not in local_keys
    }
    # What a task then loads with the pipeline's own model: the lab config's knobs.
    monkeypatch.setenv("AIRFLOW_VAR_RENDERLAB", local.env["AIRFLOW_VAR_RENDERLAB"])
    loaded = settings.load()
    pipeline = labconfig.load(CONFIG).pipeline
    assert (loaded.fps, loaded.samples, loaded.frames_per_chunk, loaded.preset, loaded.notify) == (
        pipeline.fps,
        pipeline.samples,
        pipeline.frames_per_chunk,
        pipeline.preset,
        pipeline.notify,
    )


def test_a_broken_lab_config_is_refused_before_anything_starts(tmp_path):
    bad = tmp_path / "Pulumi.bad.yaml"
    bad.write_text("config:\n  renderlab:pipeline:\n    fps: 0\n")
    r = subprocess.run(
        [sys.executable, "-m", "renderlab.workstation.local_airflow", "start", "--port", "0"]
        + ["--home", str(tmp_path / "home"), "--config", str(bad)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert r.returncode == 1 and r.stderr.startswith("airflow: ") and str(bad) in r.stderr
    assert "Traceback" not in r.stderr
    assert not (tmp_path / "home" / local_airflow.PIDS).exists()


def test_depot_songs_lists_a_file_depot_only(tmp_path, monkeypatch):
    for name in ("b_song", "a_song"):
        (tmp_path / name).mkdir()
        (tmp_path / name / "song.mid").write_bytes(b"MThd")
    (tmp_path / "no_midi").mkdir()
    monkeypatch.setenv("AIRFLOW_VAR_RENDERLAB", json.dumps({"depot": f"file://{tmp_path}"}))
    assert depot_songs.listed() == ["a_song", "b_song"]
    monkeypatch.setenv("AIRFLOW_VAR_RENDERLAB", json.dumps({"depot": "p4://perforce:1666//depot/songs"}))
    assert depot_songs.listed() == []
    monkeypatch.setenv("AIRFLOW_VAR_RENDERLAB", "{not json")
    assert depot_songs.listed() == []


CHILD = """
import os, signal, subprocess, sys, time
if sys.argv[1] == "stubborn":
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
# A Job-like grandchild in its own session (as the local backend starts Blender): outside the group.
subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"], start_new_session=True)
print("ready", flush=True)
time.sleep(600)
"""


def test_stop_leaves_no_process_by_pid(tmp_path, capsys):
    home = tmp_path / "home"
    home.mkdir()
    env = {**os.environ, "AIRFLOW_HOME": str(home)}
    procs = {}
    for name in ("polite", "stubborn"):
        procs[name] = subprocess.Popen(
            [sys.executable, "-c", CHILD, name],
            env=env,
            stdout=subprocess.PIPE,
            text=True,
            start_new_session=True,
        )
        assert procs[name].stdout.readline().strip() == "ready"
    state = {
        "url": "http://127.0.0.1:1",
        "components": {
            n: {"pid": p.pid, "create_time": psutil.Process(p.pid).create_time()} for n, p in procs.items()
        },
    }
    (home / local_airflow.PIDS).write_text(json.dumps(state))
    every = {p.pid for p in procs.values()}
    for p in procs.values():
        every |= {c.pid for c in psutil.Process(p.pid).children(recursive=True)}
    assert len(every) == 4
    began = time.monotonic()
    assert local_airflow.stop(home, grace=2) == 4
    for p in procs.values():
        p.wait(5)
    alive = [
        pid
        for pid in every
        if psutil.pid_exists(pid) and psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    ]
    assert alive == [] and time.monotonic() - began < 15
    # The stubborn one and its grandchild (SIG_IGN is inherited) needed SIGKILL.
    assert "2 process(es) ignored SIGTERM and were killed" in capsys.readouterr().out
    assert not (home / local_airflow.PIDS).exists()
    assert local_airflow.stop(home) == 0  # a second stop finds nothing


def test_stop_ignores_a_reused_pid(tmp_path):
    home = tmp_path / "home"
    home.mkdir()
    me = psutil.Process()
    state = {"components": {"scheduler": {"pid": me.pid, "create_time": me.create_time() - 100}}}
    (home / local_airflow.PIDS).write_text(json.dumps(state))
    assert local_airflow.stop(home) == 0  # not our process any more: left alone


def test_progress_line_and_api_error_details():
    tis = [
        {"task_id": "plan_run", "map_index": -1, "state": "success"},
        {"task_id": "render_chunk", "map_index": 0, "rendered_map_index": "frames 1-48", "state": "running"},
        {"task_id": "render_chunk", "map_index": 1, "rendered_map_index": None, "state": "failed"},
    ]
    assert progress_line("running", tis, 75) == (
        "render: running 01:15 | 2/3 tasks done | now: render_chunk[frames 1-48] | failed: render_chunk[1]"
    )
    assert _detail(b'{"detail": [{"loc": ["body", "conf"], "msg": "bad"}]}') == "body.conf: bad"
    assert _detail(b'{"detail": "Invalid input"}') == "Invalid input"
