"""One recorded render through the lab's Airflow: triggered with `make render`'s code, followed to its end, with
the Recorder's records saved for benchmarks/lab_scaling.py. A fault is injected by `during`, which runs beside the
follow in its own thread and sees the records as they arrive."""

from __future__ import annotations

import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from renderlab.pipeline import run_plan, steps
from renderlab.workstation import trigger
from tests.rehearsal.conftest import Rehearsal
from tests.rehearsal.recorder import Recorder

FOLLOW_TIMEOUT_S = 2 * 3600


@dataclass
class Run:
    rc: int
    run_id: str
    folder: str
    records: dict[str, Any]
    path: Path
    fault_error: BaseException | None = None


def recorded(r: Rehearsal, conf: dict, name: str, during: Callable[[Recorder], None] | None = None) -> Run:
    run_id = trigger.trigger(r.api, conf, sys.stdout)  # `make render`'s own code, over the REST API
    folder = run_plan.run_folder_id(run_id)
    kubectl = [str(r.kubectl), f"--kubeconfig={r.lab.state / 'kubeconfig'}"]
    errors: list[BaseException] = []
    with Recorder(kubectl, r.config.pipeline.namespace, f"renderlab/run={steps._label(folder)}") as recorder:
        thread = None
        if during is not None:

            def act() -> None:
                try:
                    during(recorder)
                except BaseException as e:  # noqa: BLE001 - handed to the test, which fails with it
                    errors.append(e)

            thread = threading.Thread(target=act, daemon=True)
            thread.start()
        rc = trigger.follow(r.api, run_id, sys.stdout, poll=5, timeout=FOLLOW_TIMEOUT_S)
        if thread is not None:
            thread.join(timeout=30)  # a fault is injected mid-run: one still waiting now never will be
            if thread.is_alive() and not errors:
                errors.append(
                    AssertionError("the run ended before its fault was injected; nothing was tested")
                )
    path = r.records / f"{name}.json"
    records = recorder.save(path)
    return Run(rc, run_id, folder, records, path, errors[0] if errors else None)
