"""Faults during a lab render (`make lab-rehearsal`; after tests/rehearsal/test_rehearsal.py, as the file names
sort): each injected while a real run goes on, then the run checked as `make demo` checks its own, and nothing
rendered twice."""

from __future__ import annotations

import re
import time
from collections import Counter

import pytest

from benchmarks.lab_scaling import FRAME_LINE, JOB_NAME_LABELS
from renderlab.workstation import run_outputs
from tests.rehearsal import runs
from tests.rehearsal.conftest import Rehearsal
from tests.rehearsal.recorder import Recorder
from tests.rehearsal.test_rehearsal import CONF

pytestmark = [pytest.mark.lab, pytest.mark.slow, pytest.mark.timeout(3 * 3600)]

# Three chunks of twelve frames: a short run, long enough chunks to be caught mid-way.
SHORT = {**CONF, "frames": "1-36"}
CHUNK = "renderlab/chunk"
WAIT_S = 900


def _rendered(log: str) -> list[int]:
    """The frames a pod's log says it rendered (not the ones it skipped as already done)."""
    return [int(m[2]) for m in map(FRAME_LINE.match, log.splitlines()) if m]


def _chunk_of(records: dict, pod: dict) -> str | None:
    labels = pod["metadata"].get("labels") or {}
    job = next((labels[k] for k in JOB_NAME_LABELS if k in labels), None)
    for j in records["jobs"]["items"]:
        if j["metadata"]["name"] == job:
            return (j["metadata"].get("labels") or {}).get(CHUNK)
    return None


def test_a_render_pod_deleted_mid_chunk_is_retried_and_renders_only_its_missing_frames(rehearsal: Rehearsal):
    r = rehearsal
    victim: dict = {}

    def delete_a_render_pod_mid_chunk(rec: Recorder) -> None:
        deadline = time.monotonic() + WAIT_S
        while time.monotonic() < deadline:
            for name in rec.pods():
                done = _rendered(rec.log_so_far(name))
                if name.startswith("job-render-") and len(done) >= 2:
                    r.k("-n", r.config.pipeline.namespace, "delete", "pod", name, "--wait=false")
                    victim.update(pod=name, done=done)
                    return
            time.sleep(1)
        raise AssertionError(f"no render pod rendered two frames within {WAIT_S} s")

    run = runs.recorded(r, SHORT, "fault-pod-deleted", during=delete_a_render_pod_mid_chunk)
    assert run.fault_error is None, run.fault_error
    assert run.rc == 0, f"the run failed: {run_outputs.failure(r.share, run.folder)}"
    assert run_outputs.problems(r.share, run.folder) == []
    records, logs = run.records, run.records["logs"]
    pods = {p["metadata"]["name"]: p for p in records["pods"]["items"]}
    chunk = _chunk_of(records, pods[victim["pod"]])
    again = [n for n, p in pods.items() if n != victim["pod"] and _chunk_of(records, p) == chunk]
    assert again, f"chunk {chunk}: no pod ran it again after {victim['pod']} was deleted"
    # The frames the deleted pod had finished were not rendered again: its chunk's frames, each once.
    first, last = (int(x) for x in re.findall(r"\d+", chunk)[-2:])
    by_chunk = Counter(f for n in [victim["pod"], *again] for f in _rendered(logs.get(n, "")))
    assert set(by_chunk) == set(range(first, last + 1)) and max(by_chunk.values()) == 1, by_chunk
    assert all(f not in _rendered(logs.get(n, "")) for n in again for f in victim["done"])
    # And the whole run rendered each frame once.
    everything = Counter(f for n in pods for f in _rendered(logs.get(n, "")))
    assert set(everything) == set(range(1, 37)) and max(everything.values()) == 1, everything
    done_at = max(
        j["status"]["completionTime"] for j in records["jobs"]["items"]
        if (j["metadata"].get("labels") or {}).get(CHUNK) == chunk and j.get("status", {}).get("completionTime")
    )  # fmt: skip
    print(f"pod {victim['pod']} deleted after frames {victim['done']}; chunk {chunk} re-run by {again}, "
          f"finished {done_at}")  # fmt: skip
