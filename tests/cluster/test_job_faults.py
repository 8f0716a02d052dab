"""Job faults the kubernetes backend meets on the lab's real cluster (`make cluster-test`), with no image of
ours needed: the backend (renderlab/pipeline/backends/kubernetes.py) run from this machine as Airflow's task runs
it, through the provider's hook, against the lab's API server.

- An image reference that does not exist: the Job fails within the backend's pull grace with the kubelet's pull
  error in the task's exception (what the task log shows), not at the Job's deadline, and its Job is deleted.
- A Job that finished and that nobody deleted (the Airflow worker died first) is removed by its TTL.
- A Job an earlier try left running (its task died with the scheduler) is waited on by the next try, not doubled.
"""

from __future__ import annotations

import json
import logging
import time
from types import SimpleNamespace
from unittest import mock

import pytest
from kubernetes.client import ApiClient

from renderlab.lab import image_refs
from renderlab.lab.pipeline_settings import pipeline_settings
from renderlab.pipeline.backends import kubernetes as kb
from renderlab.pipeline.jobspec import JobFailed, JobSpec
from renderlab.pipeline.settings import Settings
from renderlab.workstation import k8s_images
from tests.cluster.conftest import Cluster
from tests.cluster.test_cluster import layer  # noqa: F401  (the cluster layer applied: namespace, PVC, quota)

pytestmark = [pytest.mark.lab, pytest.mark.slow, pytest.mark.timeout(1800)]

CONN = "renderlab_cluster_lane"
MISSING = {"blender": {"tag": "no-such-tag-0000"}, "fetch": {"tag": "no-such-tag-0000"}}


def _context(task: str, try_number: int = 1) -> dict:
    ti = SimpleNamespace(dag_id="render", task_id=task, run_id="manual__faults", try_number=try_number,
                         map_index=-1, xcom_push=mock.Mock())  # fmt: skip
    return {"ti": ti, "run_id": "manual__faults", "dag": SimpleNamespace(), "task_id": task}


@pytest.fixture
def settings(built: Cluster, layer, monkeypatch) -> Settings:  # noqa: F811
    # The provider's connection as the lab's Airflow has it, pointing at the lab's kubeconfig.
    extra = {"kube_config_path": str(built.kubeconfig)}
    monkeypatch.setenv(
        f"AIRFLOW_CONN_{CONN.upper()}", json.dumps({"conn_type": "kubernetes", "extra": extra})
    )
    derived = pipeline_settings(built.config, image_refs.pull_refs(built.config, MISSING))
    return Settings.model_validate({**derived, "share_root": "/mnt/render", "kube_conn_id": CONN})


def _jobs(c: Cluster, ns: str, selector: str) -> list[str]:
    return [j["metadata"]["name"] for j in c.kjson("-n", ns, "get", "jobs", "-l", selector)["items"]]


def test_an_image_that_does_not_exist_fails_fast_with_the_pull_error(built: Cluster, settings: Settings):
    spec = JobSpec(name="render-main-1-2", image="blender", command=["python", "-c", "pass"], timeout_s=3600,
                   labels={"renderlab/fault": "missing-image"})  # fmt: skip
    start = time.monotonic()
    with pytest.raises(JobFailed) as failed:
        kb.KubernetesBackend(settings).run(spec, logging.getLogger("faults"), _context("render_chunk"))
    took = time.monotonic() - start
    message = str(failed.value)
    assert "the image cannot be pulled" in message and "no-such-tag-0000" in message, message
    assert any(r in message for r in kb.PULL_RETRIED), message
    # Within the grace and a few polls of it, not at the Job's deadline (an hour here).
    assert took < kb.PULL_GRACE_S + 120, f"took {took:.0f} s"
    print(f"missing image: failed after {took:.0f} s: {message.splitlines()[0]}")
    # The backend deleted its Job (and, in the foreground, its pod).
    ns = settings.namespace
    deadline = time.monotonic() + 60
    while _jobs(built, ns, "renderlab/fault=missing-image") and time.monotonic() < deadline:
        time.sleep(2)
    assert _jobs(built, ns, "renderlab/fault=missing-image") == []


def test_a_finished_job_nobody_deleted_is_removed_by_its_ttl(built: Cluster, settings: Settings):
    # The Job exactly as the backend builds it, with a short TTL, on an image every node has (kubeadm's pause,
    # imported from the air-gap archives) and a command that does not exist: it fails at once.
    spec = JobSpec(name="build", image="blender", command=["/no-such-command"], timeout_s=600, ttl_seconds=5,
                   labels={"renderlab/fault": "ttl"})  # fmt: skip
    job = ApiClient().sanitize_for_serialization(kb.build_job(spec, settings, _context("build")))
    job["spec"]["template"]["spec"]["containers"][0]["image"] = k8s_images.kubeadm_refs(
        built.config.kubernetes
    )["pause"]
    built.apply([job])
    ns, name = settings.namespace, job["metadata"]["name"]
    seen_finished, deadline = False, time.monotonic() + 180
    while time.monotonic() < deadline:
        jobs = {j["metadata"]["name"]: j for j in built.kjson("-n", ns, "get", "jobs")["items"]}
        if name not in jobs:
            break
        seen_finished |= any(
            c["type"] in ("Failed", "Complete") for c in jobs[name]["status"].get("conditions", [])
        )
        time.sleep(2)
    assert seen_finished, f"Job {name} was never seen finished"
    assert name not in {j["metadata"]["name"] for j in built.kjson("-n", ns, "get", "jobs")["items"]}
    pods = built.kjson("-n", ns, "get", "pods", "-l", f"batch.kubernetes.io/job-name={name}")["items"]
    assert pods == [] or all(p["metadata"].get("deletionTimestamp") for p in pods)


def test_a_later_try_waits_on_the_job_an_earlier_try_left_running(
    built: Cluster, settings: Settings, testbox_image: str
):
    # Try 1 submitted its Job and died with the scheduler (SIGKILL: no on_kill deleted the Job). The Job exactly
    # as the backend builds it, on the test image (busybox): it prints try 1's result after a while.
    labels = {"renderlab/run": "faults-adopt", "renderlab/work": "render-main-1-2"}
    spec = JobSpec(name="render-main-1-2", image="blender", command=["/bin/sh", "-c", "exit 3"], timeout_s=600,
                   labels=labels)  # fmt: skip
    job = ApiClient().sanitize_for_serialization(kb.build_job(spec, settings, _context("render_chunk")))
    container = job["spec"]["template"]["spec"]["containers"][0]
    container.update(
        image=testbox_image, command=["/bin/sh", "-c", 'sleep 10; echo \'{"by": "try 1"}\''], args=[]
    )
    built.apply([job])
    ns, selector = settings.namespace, ",".join(f"{k}={v}" for k, v in labels.items())
    try:
        # Try 2 of the same work (its own command would fail): it waits on try 1's Job and reads its result.
        # A second Job would fail (that command; an image that does not exist), never answer this.
        res = kb.KubernetesBackend(settings).run(
            spec, logging.getLogger("faults"), _context("render_chunk", 2)
        )
        assert res.result == {"by": "try 1"}
        # The adopted Job is deleted once read, as the backend deletes its own.
        deadline = time.monotonic() + 60
        while _jobs(built, ns, selector) and time.monotonic() < deadline:
            time.sleep(2)
        assert _jobs(built, ns, selector) == []
    finally:
        built.k("-n", ns, "delete", "jobs", "-l", selector, "--ignore-not-found", "--wait=false")
