"""Run notifications: a JSON webhook (generic or Slack-compatible) and a record under the run folder.

The URL is a secret: it comes from the Airflow connection ``renderlab_notify`` (its host/URL; set it as
``AIRFLOW_CONN_RENDERLAB_NOTIFY`` or in the Airflow UI, filled from the lab's ``notify_webhook_url``) and is
never logged or written to the record.
"""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path
from typing import Any, Literal

import requests

from renderlab.jobs import atomic
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
    for key in ("run_folder", "videos", "contact_sheets", "blend_files"):
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
        path = Path(record_dir) / f"notification-{summary['state']}.json"
        atomic.write_json(path, record)
        record["record"] = str(path)
    log.info("notification %s: %s", "sent" if delivery["delivered"] else "not sent", delivery)
    return record
