"""Run notifications: the notify task, the DAG's Airflow callbacks, a JSON webhook (generic or
Slack-compatible) and a record under the run folder.

The URL is a secret: it comes from the Airflow connection ``renderlab_notify`` (its host/URL; set it as
``AIRFLOW_CONN_RENDERLAB_NOTIFY`` or in the Airflow UI, filled from the lab's ``notify_webhook_url``) and is
never logged or written to the record.
"""

from __future__ import annotations

import json
import logging
import os
import time
from pathlib import Path, PurePosixPath
from typing import Any, Literal

import requests

from renderlab.base import atomic
from renderlab.base.share import TASK_ERRORS, notification_name
from renderlab.pipeline.run_plan import RunPlan, run_folder_id, share_layout
from renderlab.pipeline.settings import NOTIFY_CONN_ID

log = logging.getLogger(__name__)
Kind = Literal["none", "webhook", "slack"]


def webhook_url(conn_id: str = NOTIFY_CONN_ID) -> str | None:
    raw = os.environ.get(f"AIRFLOW_CONN_{conn_id.upper()}")
    if raw and raw.startswith(("http://", "https://")):
        return raw
    try:
        from airflow.sdk import BaseHook

        conn = BaseHook.get_connection(conn_id)
    except Exception:  # no such connection: nothing to post to
        return None
    url = (conn.extra_dejson or {}).get("url") or conn.get_uri()
    return url if url.startswith(("http://", "https://")) else None


def message(summary: dict[str, Any]) -> str:
    state = summary["state"]
    head = f"render {summary.get('song', '?')} run {summary['run_id']}: {state.upper()}"
    lines = [head]
    if summary.get("error"):
        lines.append(f"error in {summary.get('failed_task', '?')}: {summary['error']}")
    for key in ("gallery_url", "gallery_page", "run_folder", "videos", "contact_sheets", "blend_files"):
        if summary.get(key):
            lines.append(f"{key.replace('_', ' ')}: {summary[key]}")
    return "\n".join(lines)


def payload(kind: Kind, summary: dict[str, Any]) -> dict[str, Any]:
    if kind == "slack":
        return {"text": message(summary)}
    return {"event": "renderlab.run", **summary, "text": message(summary)}


def post(url: str, body: dict[str, Any], attempts: int = 3, timeout: float = 10) -> int:
    last: Exception | None = None
    for attempt in range(1, attempts + 1):
        try:
            resp = requests.post(url, json=body, timeout=timeout)
            if resp.status_code < 500:
                resp.raise_for_status()
                return resp.status_code
            last = RuntimeError(f"HTTP {resp.status_code}")
        except requests.RequestException as e:
            last = e
        time.sleep(min(2**attempt, 5))
    raise RuntimeError(f"webhook delivery failed after {attempts} attempts: {type(last).__name__}")


def notify(
    kind: Kind, summary: dict[str, Any], record_dir: str | Path | None, conn_id: str = NOTIFY_CONN_ID
) -> dict[str, Any]:
    """Send the notification and write its record; a delivery failure is recorded, never raised."""
    delivery: dict[str, Any] = {"kind": kind, "delivered": False}
    if kind != "none":
        url = webhook_url(conn_id)
        if url is None:
            delivery["error"] = f"no webhook URL: set the Airflow connection {conn_id!r}"
        else:
            try:
                delivery["status"] = post(url, payload(kind, summary))
                delivery["delivered"] = True
            except (RuntimeError, requests.HTTPError) as e:
                # Only the error class/status: the URL may carry a token.
                delivery["error"] = str(e).split(" for url")[0]
    record = {**summary, "notification": delivery, "text": message(summary)}
    if record_dir is not None:
        path = Path(record_dir) / notification_name(summary["state"])
        atomic.write_json(path, record)
        record["record"] = str(path)
    log.info("notification %s: %s", "sent" if delivery["delivered"] else "not sent", delivery)
    return record


# --- the notify task and the Airflow callbacks ------------------------------------------------------


def _abs(share_root: str, rel: str | None) -> str | None:
    if not rel:
        return None
    p = PurePosixPath(rel)
    return str(p if p.is_absolute() else PurePosixPath(share_root) / p)


def _record_dir(share_root: str, run_id: str) -> Path | None:
    path = Path(share_root) / share_layout().report(run_id)
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        log.warning("no notification record: the share is not reachable at %s from this worker: %s", path, e)
        return None
    return path


def notify_success(
    plan: RunPlan | dict,
    built: dict | None,
    assembled: dict | None,
    validated: dict | None,
    published: dict | None = None,
) -> dict:
    """The notify task: the success notification with where every output is."""
    plan = RunPlan.of(plan)
    root = plan.settings.share_root
    variants = (assembled or {}).get("variants") or {}
    summary = {
        "state": "success",
        "run_id": plan.run_id,
        "song": plan.song,
        "changelist": plan.changelist,
        "backend": plan.settings.backend,
        "run_folder": plan.run_folder,
        "blend_files": [x for x in (_abs(root, (built or {}).get(k)) for k in ("blend", "loop_blend")) if x],
        "videos": [_abs(root, v.get("video")) for v in variants.values()],
        "contact_sheets": [_abs(root, v.get("contact_sheet")) for v in variants.values()],
        "timing_report": _abs(root, (built or {}).get("report")),
        "validation": {"ok": (validated or {}).get("ok"), "timing": (validated or {}).get("timing")},
    }
    if published and published.get("page"):
        # The run's page in the gallery (published by the gallery Job), and its URL where the docs site serves it.
        summary["gallery_page"] = _abs(root, published["page"])
        if plan.settings.gallery_url:
            summary["gallery_url"] = f"{plan.settings.gallery_url.rstrip('/')}/runs/{plan.run_id}/"
    return notify(plan.notify, summary, _record_dir(root, plan.run_id), plan.settings.notify_conn_id)


def _failed_task(context: dict) -> tuple[str | None, str | None]:
    ti = context.get("ti") or context.get("task_instance")
    task_id = getattr(ti, "task_id", None)
    exc = context.get("exception")
    if task_id is None:
        # A DAG-level callback: ask the run which task failed.
        try:
            failed = [t for t in context["dag_run"].get_task_instances() if t.state == "failed"]
            if failed:
                task_id = failed[0].task_id + (f"[{failed[0].map_index}]" if failed[0].map_index >= 0 else "")
        except Exception as e:
            log.debug("could not list the run's task instances: %s", e)
    return task_id, (str(exc) if exc else context.get("reason"))


def _task_key(ti: Any) -> str:
    index = getattr(ti, "map_index", -1)
    return f"{ti.task_id}" + (f"[{index}]" if index is not None and index >= 0 else "")


def on_task_failure(context: dict) -> None:
    """Task failure callback (after its last retry): keep the error text for the run's notification."""
    from renderlab.pipeline import settings as settings_mod

    ti = context.get("ti")
    exc = context.get("exception")
    try:
        s = settings_mod.load()
        run_id = run_folder_id(context["run_id"])
        folder = _record_dir(s.share_root, run_id)
        if folder is not None and ti is not None:
            atomic.write_json(
                folder / TASK_ERRORS / f"{_task_key(ti)}.json",
                {"task": _task_key(ti), "error": f"{type(exc).__name__}: {exc}" if exc else "failed"},
            )
    except Exception as e:  # a callback must never mask the task's own failure
        log.warning("could not record the task's error: %s", e)


def _recorded_errors(folder: Path | None) -> list[dict]:
    if folder is None:
        return []
    out = []
    for path in sorted((folder / TASK_ERRORS).glob("*.json"), key=lambda p: p.stat().st_mtime):
        try:
            out.append(json.loads(path.read_text(encoding="utf-8")))
        except (OSError, json.JSONDecodeError):
            continue
    return out


def on_run_failure(context: dict) -> None:
    """DAG failure callback: notify with the failed task and its error, and record it in the run folder."""
    from renderlab.pipeline import settings as settings_mod

    dag_run = context.get("dag_run")
    airflow_run_id = getattr(dag_run, "run_id", None) or context.get("run_id") or "unknown"
    params = dict(context.get("params") or getattr(dag_run, "conf", None) or {})
    try:
        s = settings_mod.load()
    except Exception as e:  # the failure may be the settings themselves; still tell someone
        log.error("failure notification without settings: %s", e)
        return
    run_id = run_folder_id(airflow_run_id)
    task_id, error = _failed_task(context)
    folder = _record_dir(s.share_root, run_id)
    errors = _recorded_errors(folder)
    if errors:
        task_id, error = errors[0]["task"], errors[0]["error"]
    summary = {
        "state": "failed",
        "run_id": run_id,
        "song": params.get("song"),
        "changelist": params.get("changelist"),
        "backend": s.backend,
        "run_folder": str(Path(s.share_root) / share_layout().run(run_id)),
        "failed_task": task_id,
        "error": (error or "unknown error")[-2000:],
        "errors": errors[1:],
    }
    notify(params.get("notify") or s.notify, summary, folder, s.notify_conn_id)


def on_run_success(context: dict) -> None:
    """DAG success callback: the notify task already sent the success notification; log where it is."""
    dag_run = context.get("dag_run")
    log.info("render run %s succeeded", getattr(dag_run, "run_id", "?"))
