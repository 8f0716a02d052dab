"""The pipeline's settings: one structure, read from the Airflow Variable ``renderlab`` and nowhere else.

In the lab it is derived from the lab config in Python (renderlab.lab.pipeline_settings), carried by the
inventory as ``renderlab_pipeline_settings`` and written unchanged by site.yml as the Variable (the
environment variable ``AIRFLOW_VAR_RENDERLAB``). The local embedded default sets it itself (make demo).
This model's defaults are also the lab config's defaults for the same knobs (renderlab.lab.config).
"""

from __future__ import annotations

import json
import os
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, ValidationError, model_validator

from renderlab.base.presets import PRESET_NAMES
from renderlab.base.share import SHARE_MOUNT

VARIABLE = "renderlab"
NOTIFY_CONN_ID = "renderlab_notify"
KUBE_CONN_ID = "kubernetes_default"

Backend = Literal["kubernetes", "local"]
Preset = Literal[PRESET_NAMES]  # the content's own list: renderlab/base/presets.py
Notify = Literal["none", "webhook", "slack"]
# Only the kubernetes backend needs these; the lab derivation always sets them.
_KUBERNETES_ONLY = ("namespace", "share_pvc", "p4_secret")


class SettingsError(ValueError):
    pass


class Settings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    backend: Backend = "kubernetes"
    # The share as this Airflow worker sees it: the local folder (make demo), or in the lab the airflow role's
    # mount of the SMB share, at the path renderlab.lab.pipeline_settings derives (no default: one owner).
    share_root: Annotated[str, StringConstraints(pattern=r"^/")]
    # Where song projects come from: file:///abs/depot/songs or p4://[ssl:]host:port//depot/songs
    depot: str
    namespace: str | None = None
    share_pvc: str | None = None
    share_mount: str = SHARE_MOUNT
    run_as_uid: int = 2000
    # image name (blender, fetch) -> the reference the Jobs run, as recorded by `make images`.
    images: dict[str, str] = {}
    p4_secret: str | None = None
    kube_conn_id: str = KUBE_CONN_ID
    notify_conn_id: str = NOTIFY_CONN_ID
    local_slots: int = Field(default=0, ge=0, le=256)  # 0: one per CPU core
    # Local backend: extra import paths put before the repository's for the Jobs' `python -m ...`.
    python_path: list[str] = []
    notify: Notify = "none"
    preset: Preset = "demo"
    fps: int = Field(default=60, ge=1, le=240)
    samples: int = Field(default=32, ge=1, le=65536)
    frames_per_chunk: int = Field(default=48, ge=1, le=100_000)
    # A note's hit may land this far from its time; None: one frame at the song's fps.
    timing_threshold_ms: float | None = Field(default=None, gt=0)
    cpu: Annotated[str, StringConstraints(pattern=r"^\d+(\.\d+)?m?$")] = "2"
    memory: str = "4Gi"
    gpu: int = Field(default=0, ge=0)
    # Where the docs site serves the share's gallery folder (notifications link the run's page); None: unknown.
    gallery_url: str | None = None

    @model_validator(mode="after")
    def _kubernetes_names(self) -> Settings:
        if self.backend == "kubernetes":
            missing = [k for k in _KUBERNETES_ONLY if not getattr(self, k)]
            if missing:
                raise ValueError(
                    f"the kubernetes backend needs {', '.join(missing)}; they come from the lab config "
                    "(the inventory's renderlab_pipeline_settings, written by site.yml)"
                )
        return self

    def image(self, name: str) -> str:
        ref = self.images.get(name)
        if not ref:
            raise SettingsError(
                f"no image reference for {name!r} in the pipeline settings; run `make images "
                "CONFIG=Pulumi.<stack>.yaml`, regenerate the inventory and re-run site.yml"
            )
        return ref


def _variable() -> dict[str, Any]:
    raw = os.environ.get("AIRFLOW_VAR_RENDERLAB")
    if raw is None:
        try:
            from airflow.sdk import Variable

            raw = Variable.get(VARIABLE, default=None)
        except Exception:  # outside a task (tests, CLI): the environment is the only source
            raw = None
    if not raw:
        raise SettingsError(
            f"the Airflow Variable {VARIABLE!r} (AIRFLOW_VAR_RENDERLAB) is not set; in the lab site.yml writes "
            "it from the inventory's renderlab_pipeline_settings, `make demo` sets it itself"
        )
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
    try:
        return Settings.model_validate(_variable())
    except ValidationError as e:
        problems = "; ".join(f"{'.'.join(map(str, x['loc']))}: {x['msg']}" for x in e.errors())
        raise SettingsError(
            f"pipeline settings (the Airflow Variable {VARIABLE!r}) are invalid: {problems}"
        ) from e
