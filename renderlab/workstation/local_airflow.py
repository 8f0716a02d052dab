"""`make airflow`: Airflow 3 on this machine, run the way the lab's Airflow VM runs it.

What is shared with the VM, read from the airflow role rather than typed again:
  * the components, one process each: the role's ``airflow_components`` (api-server, scheduler,
    dag-processor, triggerer) -- each in its own process group, as a systemd unit with KillMode=mixed;
  * ``airflow.cfg`` and the unit environment: the role's own templates rendered with local values
    (LocalExecutor, SimpleAuthManager with a passwords file, parallelism capped, the API secret key, JWT
    secret and Fernet key each generated on its own, as renderlab.lab.host_secrets makes them for the VM);
  * the pipeline settings: the Airflow Variable ``renderlab`` (AIRFLOW_VAR_RENDERLAB), derived from the lab
    config by renderlab.lab.pipeline_settings as for the VM, with the local backend, a share folder and
    the repository's demo depot as the local defaults.
What differs, and why: SQLite instead of PostgreSQL (no database server on a workstation), the API on
127.0.0.1 only, and a parallelism cap for a small machine.

Everything lives in one folder outside git (default .cache/airflow): airflow.cfg, passwords.json and the
generated keys (all 0600), the SQLite database, logs, and ``airflow.pids`` -- what `stop` kills.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import json
import os
import secrets
import shlex
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from renderlab.base import atomic, cli, process_group
from renderlab.base.errors import CommandError

REPO = Path(__file__).resolve().parents[2]
ROLE = REPO / "ansible" / "roles" / "airflow"
DEFAULT_HOME = REPO / ".cache" / "airflow"
DEFAULT_SHARE = REPO / "out" / "airflow"
DEFAULT_DEPOT = REPO / "depot" / "songs"
DEFAULT_PORT = 8080
ADMIN = "admin"
PIDS = "airflow.pids"
STOPPING = "airflow.stopping"  # written by `stop` so that the foreground `start` exits quietly
STOP_GRACE_S = 20.0


class LocalAirflowError(CommandError):
    pass


# --- what the airflow role says -------------------------------------------------------------------------


def _yaml(path: Path) -> dict[str, Any]:
    import yaml

    return yaml.safe_load(path.read_text(encoding="utf-8")) or {}


def _jinja():
    import jinja2

    env = jinja2.Environment(undefined=jinja2.StrictUndefined, keep_trailing_newline=True)
    # The few Ansible filters the role's templates and vars use.
    env.filters["hash"] = lambda s, alg="sha1": hashlib.new(alg, str(s).encode()).hexdigest()
    env.filters["b64encode"] = lambda s: base64.b64encode(str(s).encode()).decode()
    env.filters["to_json"] = json.dumps
    return env


def role_components() -> list[str]:
    """The Airflow processes the lab's VM runs, one systemd unit each."""
    return list(_yaml(ROLE / "vars" / "main.yml")["airflow_components"])


# The role's keys, each drawn on its own as the lab's host secrets are (renderlab.lab.host_secrets).
ROLE_KEYS = {
    "airflow_api_secret_key": "renderlab_airflow_api_secret_key",
    "airflow_jwt_secret": "renderlab_airflow_jwt_secret",
    "airflow_fernet_key": "renderlab_airflow_fernet_key",
}


def new_keys() -> dict[str, str]:
    from renderlab.lab import host_secrets

    return {
        var: host_secrets.make_value(host_secrets.SERVICE_SECRETS[name]) for var, name in ROLE_KEYS.items()
    }


SIMPLE_AUTH_MANAGER = "airflow.api_fastapi.auth.managers.simple.simple_auth_manager.SimpleAuthManager"


def role_values(keys: dict[str, str], overrides: dict[str, Any]) -> dict[str, Any]:
    """The role's defaults, its vars (vars/main.yml, evaluated as Ansible would), the keys, then `overrides`."""
    env = _jinja()
    values: dict[str, Any] = {**_yaml(ROLE / "defaults" / "main.yml"), **keys, **overrides}
    for key, expr in _yaml(ROLE / "vars" / "main.yml").items():
        values[key] = (
            env.from_string(expr.strip()).render(**values) if isinstance(expr, str) and "{{" in expr else expr
        )
    return values


def render_role_template(name: str, values: dict[str, Any]) -> str:
    template = (ROLE / "templates" / name).read_text(encoding="utf-8")
    return (
        _jinja()
        .from_string(template)
        .render(ansible_managed="rendered by renderlab.workstation.local_airflow", **values)
    )


def parse_env_file(text: str) -> dict[str, str]:
    """A systemd EnvironmentFile (KEY=VALUE, shell-style quotes, '#' comments) as a dict."""
    out: dict[str, str] = {}
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        key, _, value = line.partition("=")
        words = shlex.split(value)
        out[key.strip()] = words[0] if words else ""
    return out


def set_cfg(text: str, values: dict[tuple[str, str], str]) -> str:
    """Set (replace or add) keys in an airflow.cfg text, keeping the rest of it as rendered."""
    lines = text.splitlines()
    todo = dict(values)
    section = None
    out: list[str] = []

    def flush(sec):
        at = len(out)
        while at and not out[at - 1].strip():  # before the blank lines that end the section
            at -= 1
        for (s, k), v in list(todo.items()):
            if s == sec:
                out.insert(at, f"{k} = {v.replace('%', '%%')}")
                at += 1
                del todo[(s, k)]

    for raw in lines:
        line = raw
        stripped = line.strip()
        if stripped.startswith("[") and stripped.endswith("]"):
            flush(section)
            section = stripped[1:-1]
        elif "=" in stripped and not stripped.startswith("#"):
            key = stripped.split("=", 1)[0].strip()
            if (section, key) in todo:
                line = f"{key} = {todo.pop((section, key)).replace('%', '%%')}"
        out.append(line)
    flush(section)
    for sec in sorted({s for s, _ in todo}):
        out.append(f"\n[{sec}]")
        flush(sec)
    return "\n".join(out) + "\n"


# --- the local instance ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Local:
    home: Path
    port: int
    url: str
    env: dict[str, str]
    password_file: Path

    @property
    def password(self) -> str:
        return json.loads(self.password_file.read_text(encoding="utf-8"))[ADMIN]


def port_is_free(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _private(path: Path, content: str) -> None:
    """Write a file only its owner can read (created 0600, then renamed into place)."""
    atomic.write_text(path, content, mode=0o600)


def pipeline_settings(config: Path, share: Path, depot: Path) -> dict[str, Any]:
    """The Variable `renderlab`: what the lab's Airflow gets (renderlab.lab.pipeline_settings, derived from
    the lab config), with the local backend, the share folder and the file:// depot in place of the lab's."""
    from renderlab.lab import config as labconfig
    from renderlab.lab.pipeline_settings import pipeline_settings as derive
    from renderlab.pipeline.settings import Settings

    value = {**derive(labconfig.load(config)), "backend": "local", "share_root": str(share)}
    value["depot"] = f"file://{depot}"
    # Validated by the model the tasks load it with: a bad value fails here, not in the first task.
    return Settings.model_validate(value).model_dump(mode="json")


def prepare(
    home: Path,
    *,
    port: int,
    config: Path,
    share: Path,
    depot: Path,
    parallelism: int,
) -> Local:
    """Write the instance's files (idempotent: the key and the password survive restarts)."""
    home.mkdir(parents=True, exist_ok=True)
    os.chmod(home, 0o700)
    share.mkdir(parents=True, exist_ok=True)
    key_file = home / "keys.json"
    if not key_file.is_file():
        _private(key_file, json.dumps(new_keys()) + "\n")
    password_file = home / "passwords.json"
    if not password_file.is_file():
        _private(password_file, json.dumps({ADMIN: secrets.token_urlsafe(12)}) + "\n")
    # The role deploys the repository under <home>/app (dags/ + packages on PYTHONPATH): here a link to it.
    app = home / "app"
    if not app.is_symlink() or app.resolve() != REPO:
        app.unlink(missing_ok=True)
        app.symlink_to(REPO, target_is_directory=True)
    url = f"http://127.0.0.1:{port}"
    values = role_values(
        json.loads(key_file.read_text(encoding="utf-8")),
        {
            "airflow_home": str(home),
            "airflow_api_host": "127.0.0.1",
            "airflow_api_port": port,
            "airflow_base_url": url,
            "airflow_parallelism": parallelism,
            "airflow_max_active_tasks_per_dag": parallelism,
            "airflow_admin_user": ADMIN,
            "airflow_pipeline_settings": pipeline_settings(config, share, depot),
            "airflow_share_mount": str(share),  # the local folder is the share (no mount)
            # Unused with SQLite (the database URL is overridden below) but the template needs them.
            "airflow_db_password": "",
        },
    )
    cfg = render_role_template("airflow.cfg.j2", values)
    local_cfg = {
        # PostgreSQL on the VM; SQLite here (LocalExecutor works with it in Airflow 3).
        ("database", "sql_alchemy_conn"): f"sqlite:///{home / 'airflow.db'}",
        # The lab's VM runs the FAB auth manager over TLS from the lab CA (docs/security.md); this instance on
        # loopback keeps Airflow's simple auth manager (the repo venv has no FAB provider) and plain HTTP.
        ("core", "auth_manager"): SIMPLE_AUTH_MANAGER,
        ("core", "simple_auth_manager_users"): f"{ADMIN}:admin",
        ("core", "simple_auth_manager_passwords_file"): str(password_file),
        ("core", "execution_api_server_url"): f"{url}/execution/",
        ("api", "ssl_cert"): "",
        ("api", "ssl_key"): "",
        ("api", "ssl_ca_file"): "",
        # The VM's operator unpauses the DAG once; a local instance should run what it is asked to.
        ("core", "dags_are_paused_at_creation"): "False",
        # Both log servers default to fixed ports (8793, 8794): take free ones on a shared machine.
        ("logging", "worker_log_server_port"): str(free_port()),
        ("logging", "trigger_log_server_port"): str(free_port()),
    }
    _private(home / "airflow.cfg", set_cfg(cfg, local_cfg))
    unit_env = parse_env_file(render_role_template("airflow.env.j2", values))
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW", "RENDERLAB"))}
    env.update(unit_env)
    # This venv's `airflow` and `python` first, as the role's venv is on the VM.
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"
    return Local(home=home, port=port, url=url, env=env, password_file=password_file)


# --- processes --------------------------------------------------------------------------------------------


def _airflow() -> str:
    exe = Path(sys.executable).with_name("airflow")
    if not exe.exists():
        raise LocalAirflowError(f"{exe} not found; run `make venv` first")
    return str(exe)


def _proc_identity(pid: int) -> dict[str, Any]:
    import psutil

    p = psutil.Process(pid)
    return {"pid": pid, "create_time": p.create_time()}


def _read_pids(home: Path) -> dict[str, Any] | None:
    path = home / PIDS
    if not path.is_file():
        return None
    return json.loads(path.read_text(encoding="utf-8"))


def _alive(entry: dict[str, Any]):
    """The psutil.Process for a recorded entry if that very process still runs (not a reused PID)."""
    import psutil

    try:
        p = psutil.Process(entry["pid"])
        if abs(p.create_time() - entry["create_time"]) < 0.01 and p.status() != psutil.STATUS_ZOMBIE:
            return p
    except psutil.NoSuchProcess:
        pass
    return None


def _home_processes(home: Path) -> list:
    """Every process of this user whose environment names this AIRFLOW_HOME (catches orphaned Jobs too)."""
    import psutil

    found = []
    me = os.getpid()
    for p in psutil.process_iter(["pid"]):
        if p.pid == me:
            continue
        try:
            if p.environ().get("AIRFLOW_HOME") == str(home) and p.status() != psutil.STATUS_ZOMBIE:
                found.append(p)
        except (psutil.AccessDenied, psutil.NoSuchProcess, psutil.ZombieProcess):
            continue
    return found


def _name(p) -> str:
    try:
        return " ".join(p.cmdline()[1:3])[:60] or p.name()
    except Exception:  # gone, or not ours to read
        return "?"


def stop(home: Path, out=None, grace: float = STOP_GRACE_S) -> int:
    """Stop everything `start` started: each component's process group, then any descendant or process
    still carrying this AIRFLOW_HOME. Returns the number of processes that were running."""
    out = out or sys.stdout
    import psutil

    state = _read_pids(home)
    procs: dict[int, Any] = {}
    groups: list[int] = []
    if state:
        for entry in state["components"].values():
            p = _alive(entry)
            if p is None:
                continue
            groups.append(p.pid)
            procs[p.pid] = p
            with contextlib.suppress(psutil.NoSuchProcess):
                for child in p.children(recursive=True):
                    procs[child.pid] = child
    for p in _home_processes(home):
        procs.setdefault(p.pid, p)
    if not procs:
        (home / PIDS).unlink(missing_ok=True)
        (home / STOPPING).unlink(missing_ok=True)
        return 0
    print(f"airflow: stopping {len(procs)} process(es) ...", file=out, flush=True)
    (home / STOPPING).touch()
    # SIGTERM to every group (Airflow forwards it to its own workers), then to each straggler.
    for pgid in groups:
        process_group.signal_group(pgid, signal.SIGTERM)
    for p in procs.values():
        with contextlib.suppress(psutil.NoSuchProcess):
            p.terminate()
    _, alive = psutil.wait_procs(list(procs.values()), timeout=grace)
    names = ", ".join(f"{_name(p)} ({p.pid})" for p in alive)
    for p in alive:
        process_group.signal_group(p.pid, signal.SIGKILL)
        with contextlib.suppress(psutil.NoSuchProcess):
            p.kill()
    psutil.wait_procs(alive, timeout=5)
    left = [p.pid for p in procs.values() if p.is_running() and p.status() != psutil.STATUS_ZOMBIE]
    left += [p.pid for p in _home_processes(home) if p.pid not in left]
    if left:
        raise LocalAirflowError(f"processes still running after SIGKILL: {sorted(left)}")
    (home / PIDS).unlink(missing_ok=True)
    (home / STOPPING).unlink(missing_ok=True)
    if alive:
        print(
            f"airflow: {len(alive)} process(es) ignored SIGTERM and were killed: {names}",
            file=out,
            flush=True,
        )
    return len(procs)


def _get_json(url: str, token: str | None = None, timeout: float = 5) -> Any:
    req = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"} if token else {})
    with urllib.request.urlopen(req, timeout=timeout) as resp:
        return json.loads(resp.read())


def token(url: str, username: str, password: str, timeout: float = 10) -> str:
    body = json.dumps({"username": username, "password": password}).encode()
    req = urllib.request.Request(
        f"{url}/auth/token", data=body, headers={"Content-Type": "application/json"}, method="POST"
    )
    with urllib.request.urlopen(req, timeout=timeout) as resp:
        return json.loads(resp.read())["access_token"]


def _tail(path: Path, n: int = 25) -> str:
    try:
        return "\n".join(path.read_text(encoding="utf-8", errors="replace").splitlines()[-n:])
    except OSError:
        return "(no log)"


def wait_ready(local: Local, procs: dict[str, subprocess.Popen], timeout: float, out=None) -> None:
    """Until every component reports healthy and the render DAG is parsed (what the role's health check waits
    for); fail early, with its log, when a component exits."""
    out = out or sys.stdout
    deadline = time.monotonic() + timeout
    last = ""
    while time.monotonic() < deadline:
        for name, proc in procs.items():
            if proc.poll() is not None:
                log = local.home / "logs" / f"{name}.log"
                raise LocalAirflowError(
                    f"airflow {name} exited with status {proc.returncode} while starting; "
                    f"the end of {log}:\n{_tail(log)}"
                )
        try:
            health = _get_json(f"{local.url}/api/v2/monitor/health")
            waiting = [k for k, v in health.items() if isinstance(v, dict) and v.get("status") != "healthy"]
            if not waiting:
                tok = token(local.url, ADMIN, local.password)
                errors = _get_json(f"{local.url}/api/v2/importErrors", tok)
                if errors.get("total_entries"):
                    details = "; ".join(
                        f"{e['filename']}: {e['stack_trace'][-300:]}" for e in errors["import_errors"]
                    )
                    raise LocalAirflowError(f"DAG import errors: {details}")
                _get_json(f"{local.url}/api/v2/dags/render", tok)
                return
            status = "waiting for " + ", ".join(waiting)
        except urllib.error.HTTPError as e:
            status = f"API answered {e.code}" + (" (render DAG not parsed yet)" if e.code == 404 else "")
        except (urllib.error.URLError, ConnectionError, TimeoutError, OSError):
            status = "waiting for the API server"
        if status != last:
            print(f"airflow: {status}", file=out, flush=True)
            last = status
        time.sleep(1)
    raise LocalAirflowError(
        f"Airflow was not ready within {timeout:.0f}s ({last}); logs in {local.home / 'logs'}"
    )


def start(local: Local, ready_timeout: float = 300, out=None) -> dict[str, subprocess.Popen]:
    """Migrate the database, start each component in its own process group, record them, wait for ready."""
    out = out or sys.stdout
    if _read_pids(local.home) and stop(local.home, out):
        print("airflow: stopped the processes a previous run left behind", file=out, flush=True)
    (local.home / STOPPING).unlink(missing_ok=True)
    airflow = _airflow()
    logs = local.home / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    print("airflow: preparing the database (airflow db migrate) ...", file=out, flush=True)
    with (logs / "db-migrate.log").open("w") as log:
        proc = subprocess.run(
            [airflow, "db", "migrate"],
            env=local.env,
            cwd=local.home,
            stdout=log,
            stderr=subprocess.STDOUT,
            check=False,
        )
    if proc.returncode != 0:
        raise LocalAirflowError(
            f"`airflow db migrate` failed; the end of {logs / 'db-migrate.log'}:\n{_tail(logs / 'db-migrate.log')}"
        )
    procs: dict[str, subprocess.Popen] = {}
    state: dict[str, Any] = {"url": local.url, "port": local.port, "components": {}}
    try:
        for name in role_components():
            with (logs / f"{name}.log").open("a") as log:
                procs[name] = subprocess.Popen(
                    [airflow, name],
                    env=local.env,
                    cwd=local.home,
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,  # its own process group: stop() signals all of it
                )
            state["components"][name] = _proc_identity(procs[name].pid)
            # Recorded after each start, so an interrupted start still leaves a complete list to stop.
            _private(local.home / PIDS, json.dumps(state, indent=2) + "\n")
        wait_ready(local, procs, ready_timeout, out)
    except BaseException:
        stop(local.home, out)
        raise
    return procs


def _wait_foreground(local: Local, procs: dict[str, subprocess.Popen], out=None) -> int:
    """Block until Ctrl-C / SIGTERM / `make airflow-stop` / a component exits; then stop everything."""
    out = out or sys.stdout
    stop_now = {"signal": None}

    def _on_signal(signum, _frame):
        stop_now["signal"] = signum

    signal.signal(signal.SIGINT, _on_signal)
    signal.signal(signal.SIGTERM, _on_signal)
    code = 0
    requested = False
    while stop_now["signal"] is None:
        if not (local.home / PIDS).is_file() or (local.home / STOPPING).exists():
            requested = True
            break
        dead = {n: p.returncode for n, p in procs.items() if p.poll() is not None}
        if dead:
            name, rc = next(iter(dead.items()))
            print(
                f"airflow: {name} exited with status {rc}; stopping the rest. The end of its log:\n"
                f"{_tail(local.home / 'logs' / f'{name}.log')}",
                file=sys.stderr,
                flush=True,
            )
            code = 1
            break
        time.sleep(0.5)
    if requested:
        # `make airflow-stop` is doing the stopping: let it finish, then check that it left nothing.
        deadline = time.monotonic() + STOP_GRACE_S + 15
        while (local.home / PIDS).is_file() and time.monotonic() < deadline:
            for p in procs.values():
                p.poll()  # reap our children as they exit
            time.sleep(0.5)
        print("airflow: stopped by `make airflow-stop`", file=out, flush=True)
    n = stop(local.home, out)
    for p in procs.values():
        with contextlib.suppress(subprocess.TimeoutExpired):
            p.wait(5)
    if not requested or n:
        print(
            f"airflow: stopped {n} process(es); nothing left running under {local.home}", file=out, flush=True
        )
    return code


@cli.command("airflow")
def main(argv: list[str] | None = None) -> int:
    ap = cli.Parser(prog="python -m renderlab.workstation.local_airflow", description=__doc__.split("\n")[0])
    sub = ap.add_subparsers(dest="command", required=True)
    up = sub.add_parser(
        "start", help="start Airflow in the foreground; Ctrl-C stops every process it started"
    )
    up.add_argument(
        "--port",
        type=int,
        default=None,
        help=f"API/UI port (default {DEFAULT_PORT}, else a free one; 0: a free one)",
    )
    up.add_argument(
        "--config", type=Path, default=REPO / "Pulumi.example.yaml", help="lab config (default %(default)s)"
    )
    up.add_argument("--share", type=Path, default=DEFAULT_SHARE, help="share folder (default out/airflow)")
    up.add_argument(
        "--depot", type=Path, default=DEFAULT_DEPOT, help="file:// depot folder (default depot/songs)"
    )
    up.add_argument(
        "--parallelism", type=int, default=2, help="task slots (default %(default)s: a small machine)"
    )
    up.add_argument("--ready-timeout", type=float, default=300)
    for p in (up, sub.add_parser("stop", help="stop every process a `start` started (by its PID file)")):
        p.add_argument(
            "--home", type=Path, default=DEFAULT_HOME, help="Airflow home (default .cache/airflow)"
        )
    a = ap.parse_args(argv)
    home = a.home.resolve()
    if a.command == "stop":
        n = stop(home)
        print(f"airflow: stopped {n} process(es)" if n else f"airflow: nothing running under {home}")
        return 0
    config = a.config.resolve()
    if a.port is None:
        port = DEFAULT_PORT if port_is_free(DEFAULT_PORT) else free_port()
        if port != DEFAULT_PORT:
            print(f"airflow: port {DEFAULT_PORT} is taken; using {port}", flush=True)
    else:
        port = a.port or free_port()
        if not port_is_free(port):
            raise LocalAirflowError(f"port {port} is taken; pass another --port (or 0 for a free one)")
    began = time.monotonic()
    local = prepare(
        home,
        port=port,
        config=config,
        share=a.share.resolve(),
        depot=a.depot.resolve(),
        parallelism=a.parallelism,
    )
    print(
        f"airflow: home {home}, share {a.share.resolve()}, depot {a.depot.resolve()}, config {config}",
        flush=True,
    )
    procs = start(local, a.ready_timeout)
    print(
        f"airflow: ready in {time.monotonic() - began:.0f}s: {local.url}  "
        f"login: {ADMIN} / {local.password}  (Ctrl-C or `make airflow-stop` stops it)",
        flush=True,
    )
    return _wait_foreground(local, procs)


if __name__ == "__main__":
    sys.exit(main())
