"""The Job contract (SYSTEM.md contract 3): one structure describes every container step of the pipeline.

The DAG builds `JobSpec`s and hands them to a backend (renderlab.pipeline.backends); it never knows which one.
Paths in `command` are relative to the share root: a Job runs with its working directory at the share
(the PVC mount in a pod, a local folder for the local backend), so the same spec works in both places.
"""

from __future__ import annotations

import json
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

# A Kubernetes object name: DNS-1123 label, short enough for the provider's "job-" prefix + suffix.
JobName = Annotated[str, StringConstraints(pattern=r"^[a-z0-9]([-a-z0-9]{0,38}[a-z0-9])?$")]
EnvName = Annotated[str, StringConstraints(pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")]
K8sName = Annotated[str, StringConstraints(pattern=r"^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$")]
Quantity = Annotated[str, StringConstraints(pattern=r"^\d+(\.\d+)?(m|Ki|Mi|Gi|Ti|k|M|G|T)?$")]

IMAGES = ("fetch", "blender")


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class SecretRef(_Model):
    """An environment variable filled from a Secret, by reference: the value never enters the spec."""

    env: EnvName
    secret: K8sName
    key: Annotated[str, StringConstraints(pattern=r"^[-._a-zA-Z0-9]+$")]


class Resources(_Model):
    cpu: Quantity = "1"
    memory: Quantity = "1Gi"
    # Limits default to the requests; a render Job may ask for a GPU (nvidia.com/gpu).
    cpu_limit: Quantity | None = None
    memory_limit: Quantity | None = None
    gpu: int = Field(default=0, ge=0, le=8)


class JobSpec(_Model):
    """One container step: what runs, with what, and how it is retried and cleaned up."""

    name: JobName
    image: Literal["fetch", "blender"]  # resolved to a registry reference by the k8s backend
    command: list[str] = Field(min_length=1)
    env: dict[EnvName, str] = {}
    secrets: list[SecretRef] = []
    resources: Resources = Resources()
    # Pod-level retries (k8s backoffLimit); Airflow task retries come on top.
    backoff_limit: int = Field(default=0, ge=0, le=10)
    ttl_seconds: int = Field(default=3600, ge=0)
    timeout_s: int | None = Field(default=None, ge=1)
    labels: dict[str, str] = {}
    description: str = ""


class JobResult(_Model):
    """What a Job left behind: its exit status and the one JSON result line it printed last."""

    name: str
    exit_code: int
    result: dict
    seconds: float


class JobFailed(RuntimeError):
    """A Job exited non-zero (or printed no result); the message carries the entrypoint's own error."""


def _last_object(lines: list[str], skip) -> dict | None:
    """The JSON object on the last line that `skip` does not pass over, or None."""
    for line in reversed(lines):
        text = line.strip()
        if skip(text):
            continue
        try:
            value = json.loads(text)
        except json.JSONDecodeError:
            return None
        return value if isinstance(value, dict) else None
    return None


def parse_result_line(name: str, lines: list[str]) -> dict:
    """The last non-empty output line must be one JSON object (contract 4)."""
    value = _last_object(lines, skip=lambda text: not text)
    if value is None:
        tail = "\n".join(lines[-5:])
        raise JobFailed(f"job {name}: the last output line is not a JSON result object; last lines:\n{tail}")
    return value


def parse_merged_result(name: str, lines: list[str]) -> dict:
    """The result from a log that interleaves stdout and stderr (a pod's): the last line that is a JSON object.

    The container runtime reads the two streams apart and stamps each line as it reads it, so a progress line
    written to stderr just before the result can land after it (met on the lab: fetch's summary line after its
    result, the task failed on a run that had succeeded). Progress lines are never JSON objects (contract 4)."""
    value = _last_object(lines, skip=lambda text: not text.startswith("{"))
    if value is None:
        tail = "\n".join(lines[-5:])
        raise JobFailed(f"job {name}: no JSON result object among the last lines of its log:\n{tail}")
    return value
