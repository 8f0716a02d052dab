"""The backup role without a lab: site.yml's wiring and the role's templates rendered with Ansible's own Templar
from the example stack's inventory, and the rendered backup and restore scripts run here against a real restic
repository (Debian's restic) with stand-ins only for what cannot run here: p4d (proprietary), and pg_dump where
no PostgreSQL runs. The fake p4d does what Helix Core documents for `p4d -jc`: it writes checkpoint.N and its
.md5, and rotates the journal to journal.N-1. What it does not do (and so what is not proven here): a real
checkpoint's content, p4d's table locks during -jc, and replaying a checkpoint with -jr.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml
from ansible.parsing.dataloader import DataLoader
from ansible.template import Templar

from renderlab.lab import host_secrets
from renderlab.lab.config import load
from renderlab.lab.inventory import lab_vars

ROOT = Path(__file__).resolve().parents[2]
ROLE = ROOT / "ansible" / "roles" / "backup"
RESTIC = shutil.which("restic")


def _site_backup_play() -> dict:
    plays = yaml.safe_load((ROOT / "ansible" / "site.yml").read_text())
    return next(r for p in plays for r in p.get("roles", []) if r["role"] == "backup")


def role_vars(host: str, p4d_installed: bool = True, **overrides) -> dict:
    """What the role sees on `host`: its defaults, then site.yml's mapping templated from the inventory."""
    config = load(ROOT / "Pulumi.example.yaml")
    inv = {
        **lab_vars(config),
        **host_secrets.generate(),
        "inventory_hostname": host,
        "ansible_managed": "Managed by Ansible",
    }
    values = yaml.safe_load((ROLE / "defaults" / "main.yml").read_text())
    templar = Templar(loader=DataLoader(), variables=inv)
    for key, value in _site_backup_play()["vars"].items():
        values[key] = templar.template(value)
    values.update(overrides)
    values["backup_active_sets"] = (
        values["backup_sets"]
        if p4d_installed
        else [s for s in values["backup_sets"] if s["kind"] != "p4d_checkpoint"]
    )
    return {**inv, **values}


def render(name: str, variables: dict) -> str:
    text = (ROLE / "templates" / name).read_text()
    return Templar(loader=DataLoader(), variables=variables).template(text)


def test_site_maps_the_plan_onto_the_roles_own_variables():
    play = _site_backup_play()
    assert all(k.startswith("backup_") for k in play["vars"]), list(play["vars"])
    v = role_vars("storage")
    assert v["backup_repository"] == "sftp:renderlab-backup@10.20.0.12:/srv/backup/storage"
    assert [s["name"] for s in v["backup_sets"]] == ["share_runs", "share_gallery"]
    assert v["backup_password"] == v["renderlab_backup_password"]


def test_the_airflow_database_and_units_are_the_airflow_roles():
    airflow = ROOT / "ansible" / "roles" / "airflow"
    defaults = yaml.safe_load((airflow / "defaults" / "main.yml").read_text())
    components = yaml.safe_load((airflow / "vars" / "main.yml").read_text())["airflow_components"]
    v = _site_backup_play()["vars"]
    assert v["backup_pg_database"] == defaults["airflow_db_name"]
    assert v["backup_pg_client_units"] == [f"airflow-{c}" for c in components]


def test_units_render_the_lab_configs_schedules():
    v = role_vars("airflow")
    config = load(ROOT / "Pulumi.example.yaml")
    assert config.backup is not None
    timer = render("renderlab-backup.timer.j2", v)
    assert f"OnCalendar={config.backup.schedule}\n" in timer and "Persistent=true" in timer
    check = render("renderlab-backup-check.timer.j2", v)
    assert f"OnCalendar={config.backup.check_schedule}\n" in check
    service = render("renderlab-backup-check.service.j2", v)
    assert "ExecStart=/usr/local/sbin/renderlab-restic check --read-data-subset=10%" in service
    # systemd itself accepts the rendered timers (the syntax the lab config's check promised).
    analyze = shutil.which("systemd-analyze")
    assert analyze
    for line in (timer + check).splitlines():
        if line.startswith("OnCalendar="):
            subprocess.run([analyze, "calendar", line.split("=", 1)[1]], check=True, capture_output=True)


def test_the_password_is_never_in_a_unit_script_or_the_environment_file():
    v = role_vars("airflow")
    for name in ("env.j2", "renderlab-restic.j2", "renderlab-backup.j2", "renderlab-restore.j2"):
        assert v["backup_password"] not in render(name, v), name
    assert f"RESTIC_PASSWORD_FILE={v['backup_config_dir']}/password" in render("env.j2", v)


def test_sftp_wrapper_uses_only_its_key_and_the_pinned_host_key():
    wrapper = render("renderlab-restic.j2", role_vars("storage"))
    assert "StrictHostKeyChecking=yes" in wrapper and "IdentitiesOnly=yes" in wrapper
    assert "UserKnownHostsFile=/etc/renderlab-backup/known_hosts" in wrapper
    assert "renderlab-backup@10.20.0.12 -s sftp" in wrapper


# --- the scripts, run here ------------------------------------------------------------------------------------

needs_root_and_restic = pytest.mark.skipif(
    os.geteuid() != 0 or RESTIC is None,
    reason="the rendered scripts run as root with Debian's restic (apt-get install restic; run as root)",
)

FAKE_P4D = r"""#!/bin/bash
# p4d -r ROOT -J journal -jc, as Helix Core documents it: checkpoint.N + .md5, journal rotated to journal.N-1.
set -eu
root= ; mode=
while [ $# -gt 0 ]; do
  case "$1" in -r) root=$2; shift 2;; -J) shift 2;; -jc) mode=jc; shift;; *) echo "fake p4d: $1?" >&2; exit 2;; esac
done
[ "$mode" = jc ]
cd "$root"
last=$(ls | sed -n 's/^checkpoint\.\([0-9]*\)$/\1/p' | sort -n | tail -n1)
n=$(( ${last:-0} + 1 ))
cat db.* > checkpoint.$n
echo "MD5 (checkpoint.$n) = $(md5sum checkpoint.$n | cut -d' ' -f1 | tr a-f A-F)" > checkpoint.$n.md5
mv journal journal.$((n - 1))
: > journal
echo "Checkpointing to checkpoint.$n..."
"""


@pytest.fixture
def sandbox(tmp_path):
    """A local restic repository and the rendered wrapper pointing at it (in place of the SFTP target)."""
    repo, conf = tmp_path / "repo", tmp_path / "conf"
    conf.mkdir()
    (conf / "password").write_text("test-password\n")
    env = {"RESTIC_REPOSITORY": str(repo), "RESTIC_PASSWORD_FILE": str(conf / "password"),
           "RESTIC_CACHE_DIR": str(tmp_path / "cache")}  # fmt: skip
    wrapper = tmp_path / "renderlab-restic"
    wrapper.write_text(f'#!/bin/sh\nexec {RESTIC} "$@"\n')
    wrapper.chmod(0o755)
    run_env = {
        **os.environ,
        **env,
        "RENDERLAB_RESTIC": str(wrapper),
        "PATH": f"{tmp_path / 'bin'}:{os.environ['PATH']}",
    }
    (tmp_path / "bin").mkdir()
    subprocess.run([RESTIC, "init"], env=run_env, check=True, capture_output=True)
    return tmp_path, run_env


def _run(cmd: list, env: dict, text: bool = True) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, env=env, capture_output=True, text=text, check=False)


def _script(tmp: Path, name: str, variables: dict) -> Path:
    path = tmp / name
    path.write_text(render(f"{name}.j2", variables))
    path.chmod(0o755)
    return path


def _snapshots(env: dict, tag: str) -> list[dict]:
    out = subprocess.run(
        [RESTIC, "snapshots", "--json", "--tag", tag], env=env, check=True, capture_output=True
    )
    return json.loads(out.stdout or "[]") or []


def _sha(path: Path) -> dict[str, str]:
    return {
        str(p.relative_to(path)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(path.rglob("*"))
        if p.is_file()
    }


@needs_root_and_restic
def test_share_sets_back_up_and_restore_byte_identical(sandbox):
    tmp, env = sandbox
    share = tmp / "share"
    runs, gallery = share / "runs" / "run-1" / "frames", share / "gallery"
    runs.mkdir(parents=True)
    gallery.mkdir()
    (runs / "frame_000001.png").write_bytes(os.urandom(200_000))
    (gallery / "index.html").write_text("<html>run-1</html>")
    sets = [{"name": "share_runs", "kind": "paths", "paths": [str(share / "runs")]},
            {"name": "share_gallery", "kind": "paths", "paths": [str(gallery)]}]  # fmt: skip
    v = role_vars("storage", backup_sets=sets)
    before = _sha(share)
    backup = _run([_script(tmp, "renderlab-backup", v)], env)
    assert backup.returncode == 0, backup.stdout + backup.stderr
    assert len(_snapshots(env, "share_runs")) == 1 and len(_snapshots(env, "share_gallery")) == 1
    shutil.rmtree(share / "runs")
    (gallery / "index.html").unlink()
    restore = _script(tmp, "renderlab-restore", v)
    for name in ("share_runs", "share_gallery"):
        done = _run([restore, name], env)
        assert done.returncode == 0, done.stdout + done.stderr
    assert _sha(share) == before
    unknown = _run([restore, "perforce"], env)
    assert unknown.returncode == 2 and "no data set 'perforce' on this host" in unknown.stderr


@needs_root_and_restic
def test_a_pg_dump_that_fails_midway_leaves_no_snapshot(sandbox):
    tmp, env = sandbox
    pg_dump = tmp / "bin" / "pg_dump"
    v = role_vars("airflow", backup_pg_user="root")
    script = _script(tmp, "renderlab-backup", v)
    pg_dump.write_text("#!/bin/sh\nprintf 'PGDMP-complete-archive'\n")
    pg_dump.chmod(0o755)
    ok = _run([script], env)
    assert ok.returncode == 0, ok.stdout + ok.stderr
    (snap,) = _snapshots(env, "airflow_db")
    dumped = _run([RESTIC, "dump", snap["short_id"], "/airflow.dump"], env, text=False)
    assert dumped.stdout == b"PGDMP-complete-archive"
    # The server goes away halfway: pg_dump wrote part of an archive, then failed.
    pg_dump.write_text("#!/bin/sh\nprintf 'PGDMP-trunc'\nexit 1\n")
    bad = _run([script], env)
    assert bad.returncode == 1 and "pg_dump airflow failed" in bad.stdout
    assert [s["id"] for s in _snapshots(env, "airflow_db")] == [snap["id"]]


@needs_root_and_restic
def test_perforce_checkpoint_journal_and_versioned_files_go_together(sandbox):
    tmp, env = sandbox
    data = tmp / "p4"
    root, ssl = data / "root", data / "ssl"
    (root / "depot" / "songs").mkdir(parents=True)
    ssl.mkdir()
    (root / "db.have").write_text("have-table\n")
    (root / "db.rev").write_text("rev-table\n")
    (root / "journal").write_text("@pv@ 1 @db.rev@\n")
    (root / "depot" / "songs" / "song.mid,v").write_bytes(os.urandom(5000))
    (ssl / "certificate.txt").write_text("cert")
    p4d = tmp / "bin" / "p4d"
    p4d.write_text(FAKE_P4D)
    p4d.chmod(0o755)
    sets = [{"name": "perforce", "kind": "p4d_checkpoint", "p4root": str(root), "ssl_dir": str(ssl)}]
    v = role_vars("perforce", backup_sets=sets, backup_p4d_bin=str(p4d), backup_p4d_user="root")
    script = _script(tmp, "renderlab-backup", v)
    for _ in range(3):
        done = _run([script], env)
        assert done.returncode == 0, done.stdout + done.stderr
    latest = _snapshots(env, "perforce")[-1]
    listed = _run([RESTIC, "ls", "--json", latest["short_id"]], env)
    files = {json.loads(line)["path"] for line in listed.stdout.splitlines()[1:]}
    assert f"{root}/checkpoint.3" in files and f"{root}/checkpoint.3.md5" in files
    assert f"{root}/journal.2" in files
    assert f"{root}/depot/songs/song.mid,v" in files and f"{ssl}/certificate.txt" in files
    # Never the live tables or the live journal: they change under p4d.
    assert not {f for f in files if Path(f).name.startswith("db.") or f == f"{root}/journal"}
    # Two checkpoints stay in P4ROOT (backup_p4d_keep_local); the repository keeps the rest.
    local = sorted(p.name for p in root.iterdir() if p.name.startswith(("checkpoint.", "journal.")))
    assert local == ["checkpoint.2", "checkpoint.2.md5", "checkpoint.3", "checkpoint.3.md5", "journal.2"]
    # A checkpoint that does not match its MD5 is refused.
    p4d.write_text(FAKE_P4D.replace('echo "MD5', 'echo "MD5 (x) = 00" > /dev/null; echo "MD5'
                                    ).replace("| tr a-f A-F)", "| tr a-f A-F | rev)"))  # fmt: skip
    bad = _run([script], env)
    assert bad.returncode == 1 and "does not match its .md5" in bad.stdout


@needs_root_and_restic
def test_without_p4d_the_perforce_set_fails_clearly(sandbox):
    tmp, env = sandbox
    sets = [{"name": "perforce", "kind": "p4d_checkpoint", "p4root": str(tmp / "root"), "ssl_dir": str(tmp)}]
    v = role_vars("perforce", backup_sets=sets, backup_p4d_bin=str(tmp / "no-p4d"))
    done = _run([_script(tmp, "renderlab-backup", v)], env)
    assert done.returncode == 1 and "no-p4d is not installed; no checkpoint taken" in done.stdout
    # Where the role finds no p4d, the set is left out of the scripts altogether.
    assert "backup_p4d_checkpoint perforce" not in render(
        "renderlab-backup.j2", role_vars("perforce", p4d_installed=False)
    )
