"""Job backends: each runs a `JobSpec` to completion and returns its `JobResult`.

`get(settings)` picks one from configuration; the DAG only ever calls `backend.run(spec, log)`.
"""

from __future__ import annotations

import logging
from typing import Protocol

from renderlab.pipeline.jobspec import JobResult, JobSpec
from renderlab.pipeline.settings import Settings


class Backend(Protocol):
    def run(self, spec: JobSpec, log: logging.Logger, context: dict | None = None) -> JobResult: ...


def get(settings: Settings) -> Backend:
    if settings.backend == "local":
        from renderlab.pipeline.backends.processes import ProcessBackend

        return ProcessBackend(settings)
    from renderlab.pipeline.backends.kubernetes import KubernetesBackend

    return KubernetesBackend(settings)
