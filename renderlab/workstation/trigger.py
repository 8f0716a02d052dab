"""`make render SONG=... FRAMES=... PRESET=...`: trigger the render DAG on a running Airflow and follow it.

Talks to Airflow's REST API (v2) with a token from /auth/token, the way the UI does: the same params, the
same server-side validation (a refused value comes back with the schema's message). Follows the run with one
progress line until it ends; on failure prints each failed task's log tail and exits 1.

Which Airflow: --url / AIRFLOW_URL with --user / AIRFLOW_USER and AIRFLOW_PASSWORD, or by default the one
`make airflow` runs (its URL and login are read from its home, .cache/airflow).

The lab's Airflow serves its API over TLS with a certificate from the lab CA (docs/security.md): give that CA's
certificate with --ca-file / AIRFLOW_CA_FILE (`make lab-ca-cert` writes it) and it is the only one trusted. A
password is never sent in clear to another host: plain http:// is accepted for loopback only.
"""

from __future__ import annotations

import argparse
import ipaddress
import json
import math
import os
import re
import ssl
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from renderlab.base import cli
from renderlab.base.presets import PRESETS
from renderlab.pipeline import run_plan
from renderlab.pipeline.depot_songs import DEFAULT_SONG

DAG_ID = "render"
FINISHED = {"success", "failed"}
TI_DONE = {"success", "skipped", "failed", "upstream_failed", "removed"}
LOG_TAIL_LINES = 30


class TriggerError(RuntimeError):
    """Something the user must fix (connection, login, a refused parameter): one message, exit 2."""


@dataclass
class Api:
    url: str
    user: str
    password: str = field(repr=False)  # a traceback prints the Api (pytest shows a failing test's arguments)
    timeout: float = 30
    ca_file: str | None = None  # the lab CA's certificate: the only one trusted (None: the system's store)
    _token: str | None = field(default=None, repr=False)
    _context: ssl.SSLContext | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        parts = urllib.parse.urlsplit(self.url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise TriggerError(
                f"Airflow URL {self.url!r} is not http(s)://HOST[:PORT]; fix --url / AIRFLOW_URL"
            )
        if parts.scheme == "http" and not _is_loopback(parts.hostname):
            raise TriggerError(
                f"refusing to send the password in clear to {parts.hostname}: use https:// (the lab's Airflow "
                "serves TLS) with the lab CA in --ca-file / AIRFLOW_CA_FILE"
            )
        if self.ca_file:
            try:
                # Only the lab CA: a certificate any public CA signed for that name is refused too.
                self._context = ssl.create_default_context(cafile=self.ca_file)
            except (OSError, ssl.SSLError) as e:
                raise TriggerError(
                    f"cannot load the CA certificate {self.ca_file}: {getattr(e, 'strerror', None) or e}; "
                    "write it with `make lab-ca-cert`"
                ) from None

    def _request(self, method: str, path: str, body: Any = None, auth: bool = True) -> Any:
        headers = {"Accept": "application/json"}
        data = None
        if body is not None:
            data = json.dumps(body).encode()
            headers["Content-Type"] = "application/json"
        if auth:
            headers["Authorization"] = f"Bearer {self.token()}"
        req = urllib.request.Request(self.url + path, data=data, headers=headers, method=method)
        try:
            with urllib.request.urlopen(req, timeout=self.timeout, context=self._context) as resp:
                raw = resp.read()
        except urllib.error.HTTPError as e:
            raise ApiError(e.code, _detail(e.read()), f"{method} {path}") from None
        except (urllib.error.URLError, ConnectionError, TimeoutError) as e:
            reason = getattr(e, "reason", e)
            if isinstance(reason, ssl.SSLCertVerificationError):
                raise TriggerError(
                    f"Airflow at {self.url} showed a certificate that is not trusted ({reason.verify_message}); "
                    "give the lab CA's certificate with --ca-file / AIRFLOW_CA_FILE (`make lab-ca-cert`)"
                ) from None
            raise TriggerError(
                f"cannot reach Airflow at {self.url}: {reason}; is it running (`make airflow`)? "
                "Set AIRFLOW_URL for another one"
            ) from None
        if not raw:
            return None
        try:
            return json.loads(raw)
        except (ValueError, RecursionError):
            raise TriggerError(
                f"{self.url} answered {method} {path} with something that is not JSON "
                f"({printable(raw[:60].decode(errors='replace'))!r}...); is it Airflow's API? Check --url / AIRFLOW_URL"
            ) from None

    def token(self) -> str:
        if self._token is None:
            try:
                got = self._request(
                    "POST", "/auth/token", {"username": self.user, "password": self.password}, auth=False
                )
            except ApiError as e:
                if e.status in (401, 403):
                    raise TriggerError(
                        f"Airflow at {self.url} refused the login of {self.user!r}: {e.detail}; "
                        "check AIRFLOW_USER / AIRFLOW_PASSWORD"
                    ) from None
                raise
            self._token = got["access_token"]
        return self._token

    def get(self, path: str) -> Any:
        return self._request("GET", path)

    def post(self, path: str, body: Any) -> Any:
        return self._request("POST", path, body)

    def patch(self, path: str, body: Any) -> Any:
        return self._request("PATCH", path, body)


class ApiError(RuntimeError):
    def __init__(self, status: int, detail: str, what: str):
        super().__init__(f"{what}: HTTP {status}: {detail}")
        self.status = status
        self.detail = detail


_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")


def printable(text: str) -> str:
    """`text` from the server with terminal control sequences shown, not obeyed (an ESC could rewrite the
    screen or the window title): every control character but newline and tab as its \\x escape."""
    return _CONTROL.sub(lambda m: f"\\x{ord(m.group()):02x}", text)


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _detail(raw: bytes) -> str:
    try:
        body = json.loads(raw)
    except ValueError:
        return printable(raw.decode(errors="replace")[:500])
    detail = body.get("detail", body) if isinstance(body, dict) else body
    if isinstance(detail, list):  # FastAPI's request validation: [{loc, msg}, ...]
        return "; ".join(f"{'.'.join(map(str, d.get('loc', [])))}: {d.get('msg')}" for d in detail)
    return str(detail)


# --- which Airflow ----------------------------------------------------------------------------------------


def local_connection(home: Path) -> tuple[str, str, str]:
    """The URL and login of the Airflow `make airflow` runs from `home`."""
    from renderlab.workstation import local_airflow

    pids = home / local_airflow.PIDS
    if not pids.is_file():
        raise TriggerError(
            f"no Airflow is running from {home} (no {pids.name}); start one with `make airflow`, "
            "or set AIRFLOW_URL, AIRFLOW_USER and AIRFLOW_PASSWORD for another one"
        )
    url = json.loads(pids.read_text(encoding="utf-8"))["url"]
    password = json.loads((home / "passwords.json").read_text(encoding="utf-8"))[local_airflow.ADMIN]
    return url, local_airflow.ADMIN, password


def connect(
    url: str | None, user: str, password: str | None, ca_file: str | None, home: Path | None = None
) -> Api:
    """The Airflow `make render` talks to: `url` with that login, trusting the CA in `ca_file` alone (the lab's:
    https:// with `make lab-ca-cert`'s file), or without a URL the one `make airflow` runs from `home`."""
    if url:
        if not password:
            raise TriggerError(
                "AIRFLOW_URL is set but AIRFLOW_PASSWORD is not; export the password for --user"
            )
        return Api(url.rstrip("/"), user, password, ca_file=ca_file)
    if home is None:
        from renderlab.workstation import local_airflow

        home = local_airflow.DEFAULT_HOME
    return Api(*local_connection(home.resolve()))


# --- triggering and following -----------------------------------------------------------------------------


def conf_from_args(a: argparse.Namespace) -> dict[str, Any]:
    conf: dict[str, Any] = {"song": a.song, "frames": a.frames}
    for key in ("changelist", "preset", "samples", "resolution_percentage", "frames_per_chunk", "notify"):
        value = getattr(a, key)
        if value is not None:
            conf[key] = value
    if a.loop:
        conf["loop"] = True
    if a.no_render:
        conf["render"] = False
    if a.conf:
        extra = json.loads(a.conf)
        if not isinstance(extra, dict):
            raise TriggerError(f"--conf must be a JSON object such as '{{\"loop\": true}}', got {a.conf!r}")
        conf.update(extra)
    # Checked here, before anything is triggered (the DAG refuses them too, but only once the run started).
    unknown = sorted(set(conf) - set(run_plan.PARAM_NAMES))
    if unknown:
        raise TriggerError(f"unknown param(s) {', '.join(map(repr, unknown))}; the render DAG takes "
                           f"{', '.join(run_plan.PARAM_NAMES)}")  # fmt: skip
    preset, frames = conf.get("preset"), conf.get("frames") or "all"
    if isinstance(preset, str) and preset in PRESETS and isinstance(frames, str):
        try:  # the DAG's first task refuses it too; only a preset named here can be checked before
            run_plan.still_frames_problem(preset, run_plan.FrameRange.parse(frames))
        except ValueError as e:
            if "still frame" in str(e):
                raise TriggerError(str(e)) from None
    return conf  # the song's and the frames' shapes: the DAG's Params refuse them at trigger time


def trigger(api: Api, conf: dict[str, Any], out) -> str:
    dag = api.get(f"/api/v2/dags/{DAG_ID}")
    if dag.get("is_paused"):
        api.patch(f"/api/v2/dags/{DAG_ID}", {"is_paused": False})
        print(f"render: the {DAG_ID} DAG was paused; unpaused it", file=out, flush=True)
    try:
        run = api.post(f"/api/v2/dags/{DAG_ID}/dagRuns", {"logical_date": None, "conf": conf})
    except ApiError as e:
        if e.status in (400, 422):
            # The schema's message is the first paragraph; the rest repeats the schema.
            raise TriggerError(f"Airflow refused the parameters: {e.detail.split(chr(10) * 2)[0]}") from None
        raise
    return run["dag_run_id"]


def _ti_name(ti: dict[str, Any]) -> str:
    if ti.get("map_index", -1) is not None and ti.get("map_index", -1) >= 0:
        return printable(f"{ti['task_id']}[{ti.get('rendered_map_index') or ti['map_index']}]")
    return printable(str(ti["task_id"]))


def task_instances(api: Api, run_id: str) -> list[dict[str, Any]]:
    q = urllib.parse.quote(run_id, safe="")
    return api.get(f"/api/v2/dags/{DAG_ID}/dagRuns/{q}/taskInstances?limit=1000")["task_instances"]


def progress_line(state: str, tis: list[dict[str, Any]], elapsed: float) -> str:
    done = sum(1 for t in tis if t.get("state") in TI_DONE)
    running = [
        _ti_name(t) for t in tis if t.get("state") in ("running", "queued", "scheduled", "up_for_retry")
    ]
    failed = [_ti_name(t) for t in tis if t.get("state") == "failed"]
    line = f"render: {state} {int(elapsed) // 60:02d}:{int(elapsed) % 60:02d} | {done}/{len(tis)} tasks done"
    if running:
        line += " | now: " + ", ".join(running)
    if failed:
        line += " | failed: " + ", ".join(failed)
    return line


def log_tail(api: Api, run_id: str, ti: dict[str, Any], lines: int = LOG_TAIL_LINES) -> str:
    q = urllib.parse.quote(run_id, safe="")
    path = f"/api/v2/dags/{DAG_ID}/dagRuns/{q}/taskInstances/{ti['task_id']}/logs/{ti.get('try_number') or 1}"
    if ti.get("map_index", -1) >= 0:
        path += f"?map_index={ti['map_index']}"
    try:
        body = api.get(path)
    except ApiError as e:
        return f"(log not available: {e})"
    content = body.get("content", body) if isinstance(body, dict) else body
    out: list[str] = []
    for item in content if isinstance(content, list) else str(content).splitlines():
        if isinstance(item, dict):
            event = item.get("event", "")
            if not event:
                continue
            level = item.get("level", "")
            stamp = str(item.get("timestamp", ""))[11:19]
            out.append(f"{stamp} {level:<7} {event}".rstrip())
            if item.get("error_detail"):
                for err in item["error_detail"]:
                    out.append(f"         {err.get('exc_type', '')}: {err.get('exc_value', '')}")
        else:
            out.extend(str(item).splitlines())
    return "\n".join(out[-lines:])


def _xcom(api: Api, run_id: str, task_id: str) -> Any:
    """A task's return value, or None when there is none (yet) or it is not JSON."""
    q = urllib.parse.quote(run_id, safe="")
    try:
        entry = api.get(
            f"/api/v2/dags/{DAG_ID}/dagRuns/{q}/taskInstances/{task_id}/xcomEntries/return_value?deserialize=true"
        )
    except ApiError:
        return None
    value = entry.get("value") if isinstance(entry, dict) else None
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except (ValueError, RecursionError):
            return None
    return value


def notification(api: Api, run_id: str) -> dict[str, Any] | None:
    value = _xcom(api, run_id, "notify")
    return value if isinstance(value, dict) else None


def estimate_line(api: Api, run_id: str) -> str | None:
    """What the run's render will cost, from its plan and its chunks (the frame count is known once the
    scene is built): renderlab.base.estimate, the same figure the chunks task logs."""
    from renderlab.pipeline import steps

    plan, chunks = _xcom(api, run_id, "plan_run"), _xcom(api, run_id, "chunks")
    if not isinstance(plan, dict) or not isinstance(chunks, list):
        return None
    try:
        frames = sum(int(c["last"]) - int(c["first"]) + 1 for c in chunks)
        return f"render: estimate: {steps.render_estimate(plan, frames).line()}"
    except (KeyError, TypeError, ValueError) as e:
        return f"render: no estimate ({type(e).__name__}: {printable(str(e))[:200]})"


def follow(api: Api, run_id: str, out, poll: float = 2.0, timeout: float | None = None) -> int:
    """Print progress until the run ends; 0 on success, 1 on failure (with each failed task's log tail)."""
    start = time.monotonic()
    tty = hasattr(out, "isatty") and out.isatty()
    last = ""
    estimated = False
    q = urllib.parse.quote(run_id, safe="")
    while True:
        state = api.get(f"/api/v2/dags/{DAG_ID}/dagRuns/{q}")["state"]
        tis = task_instances(api, run_id)
        if not estimated and any(t.get("task_id") == "chunks" and t.get("state") == "success" for t in tis):
            estimated = True
            said = estimate_line(api, run_id)
            if said:
                print(("\n" if tty and last else "") + said, file=out, flush=True)
        line = progress_line(state, tis, time.monotonic() - start)
        if tty:
            print("\r" + line[:200].ljust(len(last)), end="", file=out, flush=True)
        elif line.split(" | ", 1)[-1] != last.split(" | ", 1)[-1] or state in FINISHED:
            print(line, file=out, flush=True)
        last = line
        if state in FINISHED:
            break
        if timeout is not None and time.monotonic() - start > timeout:
            if tty:
                print(file=out)
            print(
                f"render: still {state} after {timeout:.0f}s; stopped following (the run goes on)", file=out
            )
            return 3
        time.sleep(poll)
    if tty:
        print(file=out)
    elapsed = time.monotonic() - start
    if state == "success":
        note = notification(api, run_id) or {}
        print(f"render: success in {elapsed:.0f}s", file=out)
        for key in ("run_folder", "videos", "contact_sheets", "record"):
            if note.get(key):
                print(f"  {key.replace('_', ' ')}: {note[key]}", file=out)
        return 0
    failed = [t for t in tis if t.get("state") == "failed"]
    print(f"render: FAILED after {elapsed:.0f}s: {', '.join(map(_ti_name, failed)) or 'the run'}", file=out)
    for ti in failed:
        print(f"--- the end of {_ti_name(ti)}'s log (try {ti.get('try_number')}) ---", file=out)
        print(printable(log_tail(api, run_id, ti)), file=out)
    return 1


@cli.command("render")
def main(argv: list[str] | None = None) -> int:
    from renderlab.workstation import local_airflow

    ap = cli.Parser(prog="python -m renderlab.workstation.trigger", description=__doc__.split("\n")[0])
    ap.add_argument("--song", default=DEFAULT_SONG, help="song project in the depot (default %(default)s)")
    ap.add_argument("--frames", default="all", help='"all" or A-B, e.g. 1-240 (default %(default)s)')
    ap.add_argument("--preset", help="demo, hd or 4k (default: the lab's)")
    ap.add_argument("--changelist", help='"latest" or a changelist number')
    ap.add_argument("--samples", type=int)
    ap.add_argument("--resolution-percentage", type=int)
    ap.add_argument("--frames-per-chunk", type=int)
    ap.add_argument("--notify", help="none, webhook or slack (default: the lab's)")
    ap.add_argument("--loop", action="store_true", help="also render the loop version")
    ap.add_argument("--no-render", action="store_true", help="only build the .blend files")
    ap.add_argument("--conf", help="more params as a JSON object (wins over the options above)")
    ap.add_argument(
        "--url", default=os.environ.get("AIRFLOW_URL"), help="Airflow's URL (default: `make airflow`'s)"
    )
    ap.add_argument("--user", default=os.environ.get("AIRFLOW_USER", local_airflow.ADMIN))
    ap.add_argument(
        "--ca-file",
        default=os.environ.get("AIRFLOW_CA_FILE"),
        help="the lab CA's certificate, the only one trusted for https:// (`make lab-ca-cert`)",
    )
    ap.add_argument("--home", type=Path, default=local_airflow.DEFAULT_HOME, help="`make airflow`'s home")
    ap.add_argument("--poll", type=float, default=2.0, help="seconds between progress checks")
    ap.add_argument("--timeout", type=float, help="stop following after this many seconds (exit 3)")
    ap.add_argument("--no-follow", action="store_true", help="trigger and print the run id only")
    a = ap.parse_args(argv)
    out = sys.stdout
    try:
        if not 0.05 <= a.poll <= 3600:
            raise TriggerError(f"--poll {a.poll:g} is out of range; give 0.05..3600 seconds")
        if a.timeout is not None and not 0 < a.timeout < math.inf:
            raise TriggerError(f"--timeout {a.timeout:g} must be a positive number of seconds")
        conf = conf_from_args(a)
        api = connect(a.url, a.user, os.environ.get("AIRFLOW_PASSWORD"), a.ca_file, a.home)
        run_id = trigger(api, conf, out)
        print(
            f"render: triggered {printable(run_id)} on {api.url} with {json.dumps(conf)}",
            file=out,
            flush=True,
        )
        print(
            f"render: watch it at {api.url}/dags/{DAG_ID}/runs/{urllib.parse.quote(run_id, safe='')}",
            file=out,
        )
        if a.no_follow:
            return 0
        return follow(api, run_id, out, poll=a.poll, timeout=a.timeout)
    except json.JSONDecodeError as e:
        print(f"render: --conf is not a JSON object: {e}", file=sys.stderr)
        return 2
    except (TriggerError, ApiError) as e:
        print(f"render: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("\nrender: stopped following; the run goes on in Airflow", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
