"""Where the pipeline runs: the backend and the share, read from configuration, never from the DAG.

Sources, later ones win: the lab config (``RENDERLAB_CONFIG`` or the variable's ``config`` key: a
Pulumi stack file), then the Airflow Variable ``renderlab`` (JSON; also settable as the environment variable
``AIRFLOW_VAR_RENDERLAB``). The local embedded default sets only the variable.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, ValidationError

from blender_scripts.presets import PRESET_NAMES
from renderlab.lab import config as labconfig

VARIABLE = "renderlab"
NOTIFY_CONN_ID = "renderlab_notify"
KUBE_CONN_ID = "kubernetes_default"


class SettingsError(ValueError):
    pass


class Settings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    backend: Literal["kubernetes", "local"] = "kubernetes"
    # The share as this Airflow worker sees it (the local folder, or the worker's mount of the SMB share).
    share_root: str = "/mnt/render"
    # Where song projects come from: file:///abs/depot/songs or p4://[ssl:]host:port//depot/songs
    depot: str = "p4://perforce:1666//depot/songs"
    namespace: str = "render"
    share_pvc: str = "render-share"
    share_mount: str = "/share"
    run_as_uid: int = 2000
    registry: str = "127.0.0.1:30500"
    image_tags: dict[str, str] = {}
    p4_secret: str = "renderlab-p4"
    kube_conn_id: str = KUBE_CONN_ID
    local_slots: int = Field(default=0, ge=0, le=256)  # 0: one per CPU core
    # Local backend: extra import paths put before the repository's for the Jobs' `python -m ...`.
    python_path: list[str] = []
    notify: Literal["none", "webhook", "slack"] = "none"
    preset: Literal[PRESET_NAMES] = "demo"  # blender_scripts/presets.py
    fps: int = Field(default=60, ge=1, le=240)
    samples: int = Field(default=32, ge=1, le=65536)
    frames_per_chunk: int = Field(default=48, ge=1)
    # A note's hit may land this far from its time; None: one frame at the song's fps.
    timing_threshold_ms: float | None = Field(default=None, gt=0)
    cpu: Annotated[str, StringConstraints(pattern=r"^\d+(\.\d+)?m?$")] = "2"
    memory: str = "4Gi"
    gpu: int = Field(default=0, ge=0)

    def image(self, name: str) -> str:
        tag = self.image_tags.get(name)
        if not tag:
            from renderlab.workstation.images import content_tag

            tag = content_tag(name)
        return f"{self.registry}/renderlab-{name}:{tag}"


def from_lab_config(path: str | Path) -> dict[str, Any]:
    """The settings the lab config determines (contract 1: derived, never typed twice)."""
    cfg = labconfig.load(path)
    p = cfg.pipeline
    p4_host = next(iter(cfg.hosts_by_role("perforce")))
    ssl = "ssl:" if cfg.perforce.ssl else ""
    return {
        "backend": p.backend,
        "namespace": p.namespace,
        "depot": f"p4://{ssl}{cfg.address(p4_host)}:{cfg.perforce.port}{cfg.perforce.projects_path}",
        "run_as_uid": cfg.share.uid,
        "registry": f"127.0.0.1:{p.registry.node_port}",
        "notify": p.notify,
        "preset": p.preset,
        "fps": p.fps,
        "samples": p.samples,
        "frames_per_chunk": p.frames_per_chunk,
    }


def _variable() -> dict[str, Any]:
    raw = os.environ.get("AIRFLOW_VAR_RENDERLAB")
    if raw is None:
        try:
            from airflow.sdk import Variable

            raw = Variable.get(VARIABLE, default=None)
        except Exception:  # outside a task (tests, CLI): the environment is the only source
            raw = None
    if not raw:
        return {}
    try:
        value = json.loads(raw)
    except json.JSONDecodeError as e:
        raise SettingsError(f"Airflow Variable {VARIABLE!r} is not JSON: {e}; set it to a JSON object") from e
    if not isinstance(value, dict):
        raise SettingsError(
            f"Airflow Variable {VARIABLE!r} must be a JSON object, got {type(value).__name__}"
        )
    return value


def load() -> Settings:
    var = _variable()
    path = var.pop("config", None) or os.environ.get("RENDERLAB_CONFIG")
    merged: dict[str, Any] = from_lab_config(path) if path else {}
    merged.update(var)
    try:
        return Settings.model_validate(merged)
    except ValidationError as e:
        problems = "; ".join(f"{'.'.join(map(str, x['loc']))}: {x['msg']}" for x in e.errors())
        raise SettingsError(
            f"pipeline settings (Variable {VARIABLE!r} / lab config) are invalid: {problems}"
        ) from e
