"""Faults during a lab render (`make lab-rehearsal`; after tests/rehearsal/test_rehearsal.py, as the file names
sort): each injected while a real run goes on, then the run checked as `make demo` checks its own, and nothing
rendered twice."""

from __future__ import annotations

import re
import time
from collections import Counter
from datetime import UTC, datetime

import pytest

from benchmarks.lab_scaling import FRAME_LINE, JOB_NAME_LABELS
from renderlab.workstation import run_outputs, trigger
from renderlab.workstation.nspawn_lab import lifecycle as locallab
from renderlab.workstation.nspawn_lab import machines
from tests import fill_up
from tests.rehearsal import conftest, runs
from tests.rehearsal.conftest import Rehearsal
from tests.rehearsal.recorder import Recorder
from tests.rehearsal.test_rehearsal import CONF

pytestmark = [pytest.mark.lab, pytest.mark.slow, pytest.mark.timeout(3 * 3600)]

# Three chunks of twelve frames: a short run, long enough chunks to be caught mid-way.
SHORT = {**CONF, "frames": "1-36"}
CHUNK = "renderlab/chunk"
WAIT_S = 900


SKIPPED_LINE = re.compile(r"^\S+ render: frame (\d+) \(\d+/\d+\) already done, skipped")


def _skipped(log: str) -> list[int]:
    return [int(m[1]) for m in map(SKIPPED_LINE.match, log.splitlines()) if m]


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


def _chunk_done(records: dict, chunk: str) -> datetime:
    """When the chunk's last completed Job completed (the retry's, after a fault)."""
    return max(
        datetime.fromisoformat(j["status"]["completionTime"].replace("Z", "+00:00"))
        for j in records["jobs"]["items"]
        if (j["metadata"].get("labels") or {}).get(CHUNK) == chunk
        and j.get("status", {}).get("completionTime")
    )


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
    # The deleted pod stopped (SIGTERM reached its entrypoint, PID 1 of the container), it did not render on
    # through its grace period; the retry rendered what it had left.
    assert pods[victim["pod"]]["status"].get("phase") == "Failed", pods[victim["pod"]]["status"]
    assert any(_rendered(logs.get(n, "")) for n in again), "the retry found nothing left to render"
    # The frames the deleted pod had finished were not rendered again: its chunk's frames, each once.
    first, last = (int(x) for x in re.findall(r"\d+", chunk)[-2:])
    by_chunk = Counter(f for n in [victim["pod"], *again] for f in _rendered(logs.get(n, "")))
    assert set(by_chunk) == set(range(first, last + 1)) and max(by_chunk.values()) == 1, by_chunk
    assert all(f not in _rendered(logs.get(n, "")) for n in again for f in victim["done"])
    # And the whole run rendered each frame once.
    everything = Counter(f for n in pods for f in _rendered(logs.get(n, "")))
    assert set(everything) == set(range(1, 37)) and max(everything.values()) == 1, everything
    done_at = _chunk_done(records, chunk)
    print(f"pod {victim['pod']} deleted after frames {victim['done']}; chunk {chunk} re-run by {again}, "
          f"finished {done_at}")  # fmt: skip


def test_the_worker_stopped_mid_run_its_chunk_finishes_on_the_control_plane(rehearsal: Rehearsal):
    r = rehearsal
    (worker_name,) = r.config.hosts_by_role("worker")
    (control_plane,) = r.config.hosts_by_role("control_plane")
    worker = r.host_named(worker_name)
    victim: dict = {}

    def stop_the_worker_mid_chunk(rec: Recorder) -> None:
        deadline = time.monotonic() + WAIT_S
        while time.monotonic() < deadline:
            for name, pod in rec.pods().items():
                on_worker = pod.get("spec", {}).get("nodeName") == worker_name
                if name.startswith("job-render-") and on_worker and _rendered(rec.log_so_far(name)):
                    machines.stop(worker)  # the whole host, as a pulled power cord
                    victim.update(pod=name, at=datetime.now(UTC), done=_rendered(rec.log_so_far(name)))
                    return
            time.sleep(1)
        raise AssertionError(f"no render pod on {worker_name} rendered a frame within {WAIT_S} s")

    try:
        run = runs.recorded(r, SHORT, "fault-worker-stopped", during=stop_the_worker_mid_chunk)
    finally:
        if not machines.is_ours(worker):  # stopped: started again, and Ready, for whatever runs next
            machines.boot(worker, r.lab.settings.bridge, r.lab.state / "logs", cluster_node=True)
            locallab._save(r.lab.settings, r.lab.machines)
            machines.wait_ssh(
                worker, r.lab.ssh_base(), r.admin, locallab.SSH_BOOT_TIMEOUT_S, r.lab.state / "logs"
            )
            r.k("wait", "--for=condition=Ready", f"node/{worker_name}", "--timeout=300s", timeout=330)
    assert run.fault_error is None, run.fault_error
    assert run.rc == 0, f"the run failed: {run_outputs.failure(r.share, run.folder)}"
    assert run_outputs.problems(r.share, run.folder) == []
    records, logs = run.records, run.records["logs"]
    pods = {p["metadata"]["name"]: p for p in records["pods"]["items"]}
    chunk = _chunk_of(records, pods[victim["pod"]])
    again = [
        p for n, p in pods.items()
        if n != victim["pod"] and _chunk_of(records, p) == chunk and p["status"].get("phase") == "Succeeded"
    ]  # fmt: skip
    assert [p["spec"]["nodeName"] for p in again] == [control_plane], f"chunk {chunk} finished on {again}"
    # Nothing rendered twice; every frame either rendered or found done (a frame the stopped pod finished
    # just before the stop may have lost its log line with the host).
    rendered = Counter(f for n in pods for f in _rendered(logs.get(n, "")))
    skipped = {f for n in pods for f in _skipped(logs.get(n, ""))}
    assert max(rendered.values()) == 1, rendered
    assert set(rendered) | skipped == set(range(1, 37)), (sorted(rendered), sorted(skipped))
    done = _chunk_done(records, chunk)
    print(f"worker stopped at {victim['at']:%H:%M:%S} while {victim['pod']} rendered chunk {chunk} "
          f"(frames {victim['done']} done); the chunk finished on {control_plane} "
          f"{(done - victim['at']).total_seconds():.0f} s after the stop")  # fmt: skip


# One chunk of 36 frames: after its pod rendered two, more than a minute of work is left, longer than the
# scheduler unit's TimeoutStopSec (60 s, during which a stopping LocalExecutor waits for its tasks), so the
# restart does cut the chunk's task off.
ONE_LONG_CHUNK = {**SHORT, "frames_per_chunk": 36}
WORK = "renderlab/work"  # renderlab.pipeline.steps: the label that names one piece of work of a run


def test_the_scheduler_restarted_mid_run_the_run_finishes_and_no_chunk_gets_a_second_job(
    rehearsal: Rehearsal,
):
    r = rehearsal
    airflow = r.host("airflow")
    victim: dict = {}

    def restart_the_scheduler_mid_chunk(rec: Recorder) -> None:
        deadline = time.monotonic() + WAIT_S
        while time.monotonic() < deadline:
            for name, pod in rec.pods().items():
                if name.startswith("job-render-") and len(_rendered(rec.log_so_far(name))) >= 2:
                    victim.update(pod=name, at=datetime.now(UTC), labels=pod["metadata"].get("labels") or {})
                    t0 = time.monotonic()
                    out = r.ssh(airflow, "sudo systemctl restart airflow-scheduler", timeout=300)
                    assert out.returncode == 0, f"systemctl restart airflow-scheduler: {out.stderr.strip()}"
                    victim["restart_s"] = time.monotonic() - t0
                    return
            time.sleep(1)
        raise AssertionError(f"no render pod rendered two frames within {WAIT_S} s")

    run = runs.recorded(
        r, ONE_LONG_CHUNK, "fault-scheduler-restarted", during=restart_the_scheduler_mid_chunk
    )
    assert run.fault_error is None, run.fault_error
    assert run.rc == 0, f"the run failed: {run_outputs.failure(r.share, run.folder)}"
    assert run_outputs.problems(r.share, run.folder) == []
    records, logs = run.records, run.records["logs"]
    # The restart cut the chunk's task off (a later try of it ran), and that try waited on the Job the first
    # left instead of submitting a second: one Job for each piece of work of the run.
    tis = [t for t in trigger.task_instances(r.api, run.run_id) if t["task_id"] == "render_chunk"]
    (ti,) = [t for t in tis if str(t.get("map_index")) == victim["labels"].get("map_index")]
    assert ti["state"] == "success" and ti["try_number"] >= 2, ti
    works = Counter((j["metadata"].get("labels") or {}).get(WORK) for j in records["jobs"]["items"])
    assert works and None not in works and max(works.values()) == 1, works
    pods = {p["metadata"]["name"]: p for p in records["pods"]["items"]}
    assert [n for n in pods if n.startswith("job-render-")] == [victim["pod"]]
    rendered = Counter(f for n in pods for f in _rendered(logs.get(n, "")))
    assert set(rendered) == set(range(1, 37)) and max(rendered.values()) == 1, rendered
    chunk = _chunk_of(records, pods[victim["pod"]])
    done = _chunk_done(records, chunk)
    print(f"scheduler restarted at {victim['at']:%H:%M:%S} ({victim['restart_s']:.0f} s for systemctl) while "
          f"{victim['pod']} rendered chunk {chunk}; try {ti['try_number']} of its task waited on that Job; "
          f"the chunk finished {(done - victim['at']).total_seconds():.0f} s after the restart")  # fmt: skip


FILLER = ".rehearsal-filler"
ERROR_LINE = re.compile(r"^\S+ render: error: (.*)$")


def test_the_share_filled_mid_render_fails_with_one_message_then_a_retry_redoes_nothing(rehearsal: Rehearsal):
    import os

    r = rehearsal
    if not os.path.ismount(r.share):
        pytest.skip(
            "local lab unavailable here for the share-full fault: the lab's share is a plain folder of this "
            f"machine's disk; bring the lab up with RENDERLAB_LAB_SHARE_SIZE=8G ({conftest.KEEP_A_LAB})"
        )
    victim: dict = {}

    def fill_the_share_mid_chunk(rec: Recorder) -> None:
        deadline = time.monotonic() + WAIT_S
        while time.monotonic() < deadline and "pod" not in victim:
            for name in rec.pods():
                done = _rendered(rec.log_so_far(name))
                if name.startswith("job-render-") and len(done) >= 2:
                    victim.update(
                        pod=name, done=done, taken=fill_up.fill(r.share / FILLER), at=datetime.now(UTC)
                    )
                    break
            time.sleep(0.5)
        if "pod" not in victim:
            raise AssertionError(f"no render pod rendered two frames within {WAIT_S} s")
        try:  # the pod meets the full share at its next frame, says so and fails; then space is freed
            while time.monotonic() < deadline:
                phase = (rec.pods().get(victim["pod"], {}).get("status") or {}).get("phase")
                if phase in ("Failed", "Succeeded"):
                    victim["phase"] = phase
                    return
                time.sleep(0.5)
            raise AssertionError(f"{victim['pod']} went on for {WAIT_S} s on a full share")
        finally:
            (r.share / FILLER).unlink(missing_ok=True)
            victim["freed"] = datetime.now(UTC)

    try:
        run = runs.recorded(r, SHORT, "fault-share-full", during=fill_the_share_mid_chunk)
    finally:
        (r.share / FILLER).unlink(missing_ok=True)
    assert run.fault_error is None, run.fault_error
    assert run.rc == 0, f"the run failed: {run_outputs.failure(r.share, run.folder)}"
    assert run_outputs.problems(r.share, run.folder) == []
    records, logs = run.records, run.records["logs"]
    assert victim["phase"] == "Failed", victim
    # The entrypoint's one message, last in the pod's log: the share is full, and what to do.
    lines = [ln for ln in logs.get(victim["pod"], "").splitlines() if ln.strip()]
    errors = [m[1] for m in map(ERROR_LINE.match, lines) if m]
    assert len(errors) == 1 and ERROR_LINE.match(lines[-1]), lines[-5:]
    assert "No space left on device" in errors[0] and "is full; free space on it" in errors[0], errors[0]
    pods = {p["metadata"]["name"]: p for p in records["pods"]["items"]}
    # That message failed the chunk's task (in its log), and a later try completed it.
    map_index = (pods[victim["pod"]]["metadata"].get("labels") or {}).get("map_index")
    (ti,) = [
        t for t in trigger.task_instances(r.api, run.run_id)
        if t["task_id"] == "render_chunk" and str(t.get("map_index")) == map_index
    ]  # fmt: skip
    assert ti["state"] == "success" and ti["try_number"] >= 2, ti
    first_try = trigger.log_tail(r.api, run.run_id, {**ti, "try_number": 1}, lines=2000)
    assert f"render: error: {errors[0]}" in first_try, first_try[-3000:]
    chunk = _chunk_of(records, pods[victim["pod"]])
    again = [n for n, p in pods.items() if n != victim["pod"] and _chunk_of(records, p) == chunk]
    assert again, f"chunk {chunk}: nothing ran it again after the share was freed"
    assert all(f not in _rendered(logs.get(n, "")) for n in again for f in victim["done"])
    rendered = Counter(f for n in pods for f in _rendered(logs.get(n, "")))
    assert set(rendered) == set(range(1, 37)) and max(rendered.values()) == 1, rendered
    done = _chunk_done(records, chunk)
    print(f"share filled ({victim['taken'] >> 20} MiB taken) at {victim['at']:%H:%M:%S} while {victim['pod']} "
          f"rendered chunk {chunk} (frames {victim['done']} done); its error: {errors[0]}; freed "
          f"{(victim['freed'] - victim['at']).total_seconds():.0f} s later; the chunk finished "
          f"{(done - victim['freed']).total_seconds():.0f} s after space was freed")  # fmt: skip
