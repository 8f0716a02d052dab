"""The kubernetes backend without a cluster: every Job the DAG would submit is built by the provider's own
KubernetesJobOperator and validated with kubernetes-validate --strict; the operator path runs with the
provider patched at its own patch points (hook calls, pod discovery, log streaming). An opt-in lane runs
a Job against a real cluster when KUBECONFIG is set."""

from __future__ import annotations

import os
from pathlib import Path
from types import SimpleNamespace
from unittest import mock

import kubernetes_validate
import pytest
from kubernetes.client import ApiClient
from kubernetes.client import models as k8s

from renderlab.lab import image_refs
from renderlab.lab.config import load
from renderlab.lab.pipeline_settings import pipeline_settings, recorded_images
from renderlab.pipeline.backends import kubernetes as kb
from renderlab.pipeline.jobspec import JobFailed, JobSpec
from renderlab.pipeline.settings import Settings
from tests import pod_security
from tests.pipeline.conftest import REPO
from tests.pipeline.dag_jobs import dag_specs

K8S_VERSION = "1.35"  # the lab's Kubernetes minor (kubernetes.version in the lab config)

HOOK = "airflow.providers.cncf.kubernetes.hooks.kubernetes.KubernetesHook"
OPERATOR = "airflow.providers.cncf.kubernetes.operators.job.KubernetesJobOperator"


# What `make images` would have recorded for the example stack (one with a digest, one without).
RECORDED = {"blender": {"tag": "b" * 16}, "fetch": {"tag": "f" * 16, "digest": "sha256:" + "0" * 64}}


@pytest.fixture
def settings() -> Settings:
    # Derived from the example lab config exactly as the inventory carries it to the Airflow Variable.
    config = load(REPO / "Pulumi.example.yaml")
    derived = pipeline_settings(config, image_refs.pull_refs(config, RECORDED))
    return Settings.model_validate({**derived, "share_root": "/mnt/render"})


def strict_valid(job: dict) -> None:
    """kubernetes-validate --strict: raises on any schema error or unknown field."""
    assert kubernetes_validate.validate(job, K8S_VERSION, strict=True) == K8S_VERSION


def as_dict(obj) -> dict:
    return ApiClient().sanitize_for_serialization(obj)


def test_every_job_the_dag_submits_is_a_valid_batch_v1_job(settings, no_cluster):
    specs = dag_specs(settings)
    names = [s.name for s in specs]
    assert names[:2] == ["fetch", "build"]
    assert [n for n in names if n.startswith("render-")] == [
        "render-main-1-48",
        "render-main-49-96",
        "render-main-97-100",
        "render-loop-1-48",
        "render-loop-49-60",
    ]
    assert names[-3:] == ["assemble-loop", "assemble-main", "validate"]
    for spec in specs:
        job = as_dict(kb.build_job(spec, settings))
        strict_valid(job)
        pod = job["spec"]["template"]["spec"]
        (c,) = pod["containers"]
        assert job["apiVersion"] == "batch/v1" and job["kind"] == "Job"
        assert job["metadata"]["namespace"] == settings.namespace
        assert job["spec"]["ttlSecondsAfterFinished"] == spec.ttl_seconds
        assert job["spec"]["backoffLimit"] == spec.backoff_limit
        assert pod["restartPolicy"] == "Never"
        assert pod["volumes"] == [
            {"name": "share", "persistentVolumeClaim": {"claimName": settings.share_pvc}},
            {"name": "tmp", "emptyDir": {}},
        ]
        assert c["volumeMounts"] == [
            {"mountPath": settings.share_mount, "name": "share"},
            {"mountPath": "/tmp", "name": "tmp"},
        ]
        assert c["securityContext"]["readOnlyRootFilesystem"] is True  # HOME and TMPDIR are on /tmp
        assert c["workingDir"] == settings.share_mount  # the specs' relative paths resolve on the share
        assert [c["command"][0], *c["args"]] == spec.command
        # Exactly the recorded reference, pulled from the nodes' loopback registry (never recomputed).
        tag = RECORDED[spec.image]["tag"]
        assert c["image"].startswith(f"127.0.0.1:30500/renderlab-{spec.image}:{tag}")
        assert c["image"] == settings.images[spec.image]
        assert c["resources"]["requests"] == {"cpu": spec.resources.cpu, "memory": spec.resources.memory}
        assert pod["securityContext"]["runAsNonRoot"] is True
        assert pod["securityContext"]["runAsUser"] == settings.run_as_uid
        assert pod_security.violations(pod) == []  # the render namespace enforces `restricted`
        assert job["metadata"]["labels"]["renderlab/run"].startswith("manual__2026-01-01T00-00-00")


def test_strict_validation_catches_a_wrong_field(settings, no_cluster):
    job = as_dict(kb.build_job(dag_specs(settings)[1], settings))
    job["spec"]["template"]["spec"]["containers"][0]["workdir"] = "/share"  # misspelt workingDir
    with pytest.raises(kubernetes_validate.ValidationError):
        strict_valid(job)


def test_fetch_job_gets_perforce_secrets_by_reference(settings, no_cluster):
    fetch = dag_specs(settings)[0]
    container = as_dict(kb.build_job(fetch, settings))["spec"]["template"]["spec"]["containers"][0]
    env = {e["name"]: e for e in container["env"]}
    for name, key in (("P4USER", "user"), ("P4PASSWD", "password"), ("P4TRUST_FINGERPRINT", "fingerprint")):
        assert env[name] == {
            "name": name,
            "valueFrom": {"secretKeyRef": {"name": settings.p4_secret, "key": key}},
        }
    assert "value" not in env["P4PASSWD"]
    # The lab config's Perforce (ssl, address, port, projects path) is where the source comes from.
    assert container["args"][container["args"].index("--source") + 1] == (
        "p4://ssl:10.20.0.14:1666//depot/songs/frere_groove/...@42"
    )


def test_gpu_render_jobs_ask_for_the_nvidia_runtime(settings, no_cluster):
    gpu = settings.model_copy(update={"gpu": 1})
    spec = next(s for s in dag_specs(gpu) if s.name.startswith("render-"))
    job = as_dict(kb.build_job(spec, gpu))
    strict_valid(job)
    c = job["spec"]["template"]["spec"]["containers"][0]
    assert c["resources"]["limits"]["nvidia.com/gpu"] == "1"
    assert {"name": "NVIDIA_VISIBLE_DEVICES", "value": "all"} in c["env"]
    assert c["args"][-2:] == ["--device", "gpu"]


def _context():
    ti = SimpleNamespace(
        dag_id="render",
        task_id="render_chunk",
        run_id="manual__x",
        try_number=1,
        map_index=3,
        xcom_push=mock.Mock(),
    )
    return {"ti": ti, "run_id": "manual__x", "dag": SimpleNamespace(), "task_id": "render_chunk"}


def _pod_log_like_the_client(text: str):
    """read_namespaced_pod_log as the kubernetes client 36.x answers: raw bytes in `.data` when asked for the
    response itself, else the repr of those bytes as one str (what the lab's real cluster gave)."""

    def read(**kw):
        data = text.encode()
        return SimpleNamespace(data=data) if kw.get("_preload_content") is False else str(data)

    return read


@pytest.fixture
def provider(no_cluster):
    """The provider with its cluster calls patched at the hook/operator boundaries it defines."""
    created: list[k8s.V1Job] = []
    pod = k8s.V1Pod(metadata=k8s.V1ObjectMeta(name="job-render-pod", namespace="render"))
    core = mock.Mock()
    core.read_namespaced_pod_log.side_effect = _pod_log_like_the_client(
        'render: frame 1\n{"rendered": 2, "skipped": 0}\n'
    )
    core.list_namespaced_pod.return_value = SimpleNamespace(
        items=[pod]
    )  # the Job's pods, by its job-name label
    batch = mock.Mock()
    batch.list_namespaced_job.return_value = SimpleNamespace(items=[])  # no Job of an earlier try
    with mock.patch(f"{HOOK}.create_job", side_effect=lambda job: created.append(job) or job), \
         mock.patch.object(kb._hook_class(), "wait_until_job_complete", side_effect=lambda job_name, namespace, **kw: created[-1]) as wait, \
         mock.patch(f"{HOOK}.is_job_failed", return_value=False) as failed, \
         mock.patch(f"{HOOK}.core_v1_client", new_callable=mock.PropertyMock, return_value=core), \
         mock.patch(f"{HOOK}.batch_v1_client", new_callable=mock.PropertyMock, return_value=batch), \
         mock.patch(f"{HOOK}.get_pod", return_value=pod), \
         mock.patch("airflow.providers.cncf.kubernetes.utils.pod_manager.PodManager.fetch_requested_container_logs") as logs:  # fmt: skip
        yield SimpleNamespace(created=created, wait=wait, failed=failed, core=core, batch=batch, logs=logs)


def _render_spec():
    return JobSpec(
        name="render-main-1-2",
        image="blender",
        command=["python", "-m", "blender_scripts.render", "--frames", "1-2"],
    )


def test_operator_path_submits_waits_streams_logs_and_cleans_up(settings, provider):
    import logging

    res = kb.KubernetesBackend(settings).run(_render_spec(), logging.getLogger("t"), _context())
    assert res.result == {"rendered": 2, "skipped": 0}
    (job,) = provider.created
    strict_valid(as_dict(job))
    assert job.metadata.name.startswith("job-render-main-1-2-")
    labels = job.spec.template.metadata.labels
    assert labels["dag_id"] == "render" and labels["map_index"] == "3"
    provider.wait.assert_called_once()
    provider.logs.assert_called_once()  # the pod's log streams into the task log
    provider.core.read_namespaced_pod_log.assert_called_once()
    provider.batch.delete_namespaced_job.assert_called_once_with(
        name=job.metadata.name, namespace="render", propagation_policy="Foreground"
    )


def test_the_result_is_read_from_a_log_whose_streams_interleave(settings, provider):
    import logging

    # As the lab's fetch pod logged it: its summary (stderr, written first) read by the runtime after the
    # result (stdout).
    provider.core.read_namespaced_pod_log.side_effect = _pod_log_like_the_client(
        '{"changelist": 7, "files_total": 2}\nfetch: changelist 7: 0 of 2 files transferred\n'
    )
    res = kb.KubernetesBackend(settings).run(_render_spec(), logging.getLogger("t"), _context())
    assert res.result == {"changelist": 7, "files_total": 2}


def test_a_log_without_a_result_object_fails_the_task(settings, provider):
    import logging

    provider.core.read_namespaced_pod_log.side_effect = _pod_log_like_the_client("render: frame 1\n[1, 2]\n")
    with pytest.raises(JobFailed, match="no JSON result object"):
        kb.KubernetesBackend(settings).run(_render_spec(), logging.getLogger("t"), _context())


def test_a_job_whose_pod_the_quota_holds_back_waits_for_it(settings, provider, monkeypatch):
    import logging

    # The namespace's quota is full: the Job controller creates the pod only once another Job finished. The
    # provider alone lists a few times back to back and fails ("No pods running"), as it did in the lab.
    monkeypatch.setattr(kb, "POD_POLL_S", 0)
    pod = k8s.V1Pod(metadata=k8s.V1ObjectMeta(name="job-render-pod", namespace="render"))
    answers = iter([[], [], [], [], [], [pod]])
    provider.core.list_namespaced_pod.side_effect = lambda **kw: SimpleNamespace(items=next(answers))
    res = kb.KubernetesBackend(settings).run(_render_spec(), logging.getLogger("t"), _context())
    assert res.result == {"rendered": 2, "skipped": 0}
    assert provider.core.list_namespaced_pod.call_count == 6  # waited through five empty answers


def _failed(job: k8s.V1Job) -> k8s.V1Job:
    job.status = k8s.V1JobStatus(conditions=[k8s.V1JobCondition(type="Failed", status="True")])
    return job


def test_failed_job_raises_the_clusters_reason_and_is_kept_for_its_ttl(settings, provider):
    import logging

    provider.wait.side_effect = lambda job_name, namespace, **kw: _failed(provider.created[-1])
    provider.failed.return_value = "BackoffLimitExceeded: Job has reached the specified backoff limit"
    provider.core.read_namespaced_pod_log.side_effect = _pod_log_like_the_client(
        "00:02.730  blend | Read blend\nrender: error: --blend x.blend does not exist\n"
    )
    with pytest.raises(JobFailed, match="BackoffLimitExceeded") as e:
        kb.KubernetesBackend(settings).run(_render_spec(), logging.getLogger("t"), _context())
    # The entrypoint's own message is surfaced, last.
    assert str(e.value).splitlines()[-1] == "render: error: --blend x.blend does not exist"
    # Kept (its TTL removes it): its log stays readable and the next try knows where it failed.
    provider.batch.delete_namespaced_job.assert_not_called()
    assert provider.created[-1].spec.ttl_seconds_after_finished == 3600


SAME_WORK_SELECTOR = "renderlab/run=r1,renderlab/work=render-main-1-2"


def _same_work_spec() -> JobSpec:
    return JobSpec(name="render-main-1-2", image="blender", command=["python", "-m", "x"],
                   labels={"renderlab/run": "r1", "renderlab/work": "render-main-1-2"})  # fmt: skip


def _earlier_job(suffix: str, minute: int = 0, deleting: bool = False) -> k8s.V1Job:
    """A Job of the same work that an earlier try submitted (no condition yet: still running)."""
    from datetime import UTC, datetime

    return k8s.V1Job(
        metadata=k8s.V1ObjectMeta(
            name=f"job-render-main-1-2-{suffix}", namespace="render",
            creation_timestamp=datetime(2026, 12, 7, 1, minute, tzinfo=UTC),
            deletion_timestamp=datetime(2026, 12, 7, 2, 0, tzinfo=UTC) if deleting else None,
        ),
        status=k8s.V1JobStatus(active=1),
    )  # fmt: skip


def _complete(job: k8s.V1Job) -> k8s.V1Job:
    job.status = k8s.V1JobStatus(conditions=[k8s.V1JobCondition(type="Complete", status="True")])
    return job


def test_a_try_after_the_scheduler_restarted_waits_on_the_job_it_left_instead_of_submitting_another(
    settings, provider
):
    import logging

    # Try 1's task process was SIGKILLed with the scheduler (no on_kill ran): its Job still renders the chunk.
    left = _earlier_job("try1", minute=1)
    provider.batch.list_namespaced_job.return_value = SimpleNamespace(items=[left])
    provider.wait.side_effect = lambda job_name, namespace, **kw: _complete(left)
    res = kb.KubernetesBackend(settings).run(_same_work_spec(), logging.getLogger("t"), _context())
    assert provider.created == []  # no second Job for the same chunk
    assert provider.batch.list_namespaced_job.call_args.kwargs["label_selector"] == SAME_WORK_SELECTOR
    assert provider.wait.call_args.kwargs["job_name"] == "job-render-main-1-2-try1"
    # Its own pods, by the Job controller's label, and the result read from them; then the Job is deleted.
    assert provider.core.list_namespaced_pod.call_args.kwargs["label_selector"] == (
        "batch.kubernetes.io/job-name=job-render-main-1-2-try1"
    )
    assert res.result == {"rendered": 2, "skipped": 0}
    provider.batch.delete_namespaced_job.assert_called_once_with(
        name="job-render-main-1-2-try1", namespace="render", propagation_policy="Foreground"
    )


def test_a_job_that_already_succeeded_is_read_before_a_running_one(settings, provider):
    import logging

    running, done = _earlier_job("b", minute=5), _complete(_earlier_job("a", minute=1))
    provider.batch.list_namespaced_job.return_value = SimpleNamespace(items=[running, done])
    provider.wait.side_effect = lambda job_name, namespace, **kw: done
    kb.KubernetesBackend(settings).run(_same_work_spec(), logging.getLogger("t"), _context())
    assert provider.created == []
    assert provider.wait.call_args.kwargs["job_name"] == "job-render-main-1-2-a"


def test_failed_or_deleted_jobs_of_the_same_work_are_not_adopted(settings, provider):
    import logging

    gone = [_failed(_earlier_job("failed")), _earlier_job("deleting", deleting=True)]
    provider.batch.list_namespaced_job.return_value = SimpleNamespace(items=gone)
    kb.KubernetesBackend(settings).run(_same_work_spec(), logging.getLogger("t"), _context())
    (job,) = provider.created  # a new Job: those two will never give a result
    assert job.metadata.name not in {"job-render-main-1-2-failed", "job-render-main-1-2-deleting"}


def test_the_dag_labels_every_job_with_its_run_and_work(settings, no_cluster):
    specs = dag_specs(settings)
    for spec in specs:
        assert all(spec.labels.get(k) for k in kb.SAME_WORK), spec.name
    works = [(s.labels["renderlab/run"], s.labels["renderlab/work"]) for s in specs]
    assert len(set(works)) == len(works)  # one piece of work, one label pair


def test_a_retry_prefers_another_node_than_where_the_same_chunk_failed(settings, provider):
    import logging

    spec = _same_work_spec()
    failed_there = _pod("job-render-main-1-2-old", phase="Failed")  # on rl0-k8s-worker
    this_try = _pod("job-render-main-1-2-new", phase="Running")
    provider.core.list_namespaced_pod.side_effect = lambda namespace, label_selector: SimpleNamespace(
        items=[failed_there] if label_selector == SAME_WORK_SELECTOR else [this_try]
    )
    provider.batch.list_namespaced_job.return_value = SimpleNamespace(items=[_failed(_earlier_job("old"))])
    kb.KubernetesBackend(settings).run(spec, logging.getLogger("t"), _context())
    affinity = provider.created[-1].spec.template.spec.affinity
    (term,) = affinity.node_affinity.preferred_during_scheduling_ignored_during_execution  # preferred only
    (req,) = term.preference.match_expressions
    assert (req.key, req.operator, req.values) == ("kubernetes.io/hostname", "NotIn", ["rl0-k8s-worker"])
    strict_valid(as_dict(provider.created[-1]))


def test_a_first_try_has_no_node_preference(settings, provider):
    import logging

    kb.KubernetesBackend(settings).run(_render_spec(), logging.getLogger("t"), _context())
    assert not provider.created[-1].spec.template.spec.affinity


def _pod(name: str, phase: str = "Pending", waiting: str | None = None, message: str = "") -> k8s.V1Pod:
    state = k8s.V1ContainerState(waiting=k8s.V1ContainerStateWaiting(reason=waiting, message=message or None))
    statuses = [k8s.V1ContainerStatus(name="base", image="x", image_id="", ready=False, restart_count=0,
                                      state=state)] if waiting else None  # fmt: skip
    return k8s.V1Pod(
        metadata=k8s.V1ObjectMeta(name=name, namespace="render"),
        spec=k8s.V1PodSpec(containers=[], node_name="rl0-k8s-worker"),
        status=k8s.V1PodStatus(phase=phase, container_statuses=statuses),
    )


def test_an_image_that_cannot_be_pulled_is_named_after_a_grace_not_at_the_jobs_deadline():
    since: dict[str, float] = {}
    backoff = [_pod("p", waiting="ImagePullBackOff", message='pull "lab/blender:nope": not found')]
    assert kb.unpullable(backoff, since, now=100.0) is None  # a registry's passing failure gets retries
    assert kb.unpullable(backoff, since, now=100.0 + kb.PULL_GRACE_S - 1) is None
    why = kb.unpullable(backoff, since, now=100.0 + kb.PULL_GRACE_S)
    assert why == 'pod p on node rl0-k8s-worker: ImagePullBackOff: pull "lab/blender:nope": not found'
    # A name that can never be pulled fails at once; a pod still being created is no failure.
    assert "InvalidImageName" in kb.unpullable([_pod("q", waiting="InvalidImageName")], {}, now=0.0)
    assert kb.unpullable([_pod("r", waiting="ContainerCreating"), _pod("s")], {}, now=1e9) is None


@pytest.fixture
def hook(no_cluster, monkeypatch):
    """The backend's watching hook, its cluster calls answered from `answers` (Job status, pod lists)."""
    monkeypatch.setattr(kb, "PULL_GRACE_S", 0.0)
    h = kb._hook_class()(conn_id=None)
    core = mock.Mock()
    monkeypatch.setattr(type(h), "core_v1_client", property(lambda self: core))
    h.answers = SimpleNamespace(jobs=[], pods=[])
    monkeypatch.setattr(h, "get_job_status", lambda job_name, namespace: h.answers.jobs.pop(0))
    core.list_namespaced_pod.side_effect = lambda namespace, label_selector: SimpleNamespace(
        items=h.answers.pods.pop(0)
    )
    h.core = core
    return h


def _job(done: bool) -> k8s.V1Job:
    cond = [k8s.V1JobCondition(type="Complete", status="True")] if done else None
    return k8s.V1Job(metadata=k8s.V1ObjectMeta(name="job-render-x"), status=k8s.V1JobStatus(conditions=cond))


def test_the_wait_fails_fast_when_the_pod_cannot_get_its_image(hook):
    hook.answers.jobs = [_job(False), _job(False)]
    hook.answers.pods = [[_pod("p")], [_pod("p", waiting="ErrImagePull", message="not found")]]
    with pytest.raises(kb.ImageUnavailable, match="ErrImagePull: not found"):
        hook.wait_until_job_complete("job-render-x", "render", job_poll_interval=0)
    assert hook.core.list_namespaced_pod.call_args.kwargs["label_selector"] == (
        "batch.kubernetes.io/job-name=job-render-x"
    )


def test_a_pod_whose_node_is_gone_is_named_once_its_deletion_is_overdue():
    from datetime import UTC, datetime, timedelta

    now = datetime(2026, 12, 6, 23, 0, tzinfo=UTC)
    evicted = _pod("p", phase="Running")
    evicted.metadata.deletion_timestamp = now - timedelta(seconds=kb.STUCK_DELETING_S - 1)
    evicted.status.conditions = [k8s.V1PodCondition(type="DisruptionTarget", status="True",
                                                    reason="DeletionByTaintManager", message="Taint manager")]  # fmt: skip
    assert kb.stuck_deleting([evicted], now) is None  # still within its grace: it may stop yet
    later = now + timedelta(seconds=1)
    assert kb.stuck_deleting([evicted], later) == (
        f"pod p on node rl0-k8s-worker has not stopped {kb.STUCK_DELETING_S:.0f} s after its deletion "
        "(DeletionByTaintManager: Taint manager)"
    )
    finished = _pod("q", phase="Failed")
    finished.metadata.deletion_timestamp = now - timedelta(hours=1)
    assert kb.stuck_deleting([finished, _pod("r", phase="Running")], later) is None


def test_the_wait_gives_up_on_a_pod_lost_with_its_node(hook):
    from datetime import UTC, datetime, timedelta

    lost = _pod("p", phase="Running")
    lost.metadata.deletion_timestamp = datetime.now(UTC) - timedelta(seconds=kb.STUCK_DELETING_S + 5)
    hook.answers.jobs = [_job(False)]
    hook.answers.pods = [[lost]]
    with pytest.raises(kb.PodLost, match="its node is lost"):
        hook.wait_until_job_complete("job-render-x", "render", job_poll_interval=0)


def test_jobs_leave_a_lost_node_after_seconds_not_minutes(settings, no_cluster):
    job = kb.build_job(_render_spec(), settings, _context())
    tolerations = {(t.key, t.effect): t.toleration_seconds for t in job.spec.template.spec.tolerations}
    assert tolerations == {
        ("node.kubernetes.io/unreachable", "NoExecute"): kb.NODE_LOST_TOLERATION_S,
        ("node.kubernetes.io/not-ready", "NoExecute"): kb.NODE_LOST_TOLERATION_S,
    }
    assert kb.NODE_LOST_TOLERATION_S < 300  # the cluster's default, which they replace
    strict_valid(as_dict(job))


def test_the_pods_that_finished_are_read_not_the_first_one_seen(settings, provider):
    import logging

    # The first pod was deleted mid-chunk; the Job controller replaced it and the replacement finished.
    replacement = _pod("job-render-pod-2", phase="Succeeded")

    def wait(job_name, namespace, **kw):
        hook = kb._hook_class()
        hook.final_pods = [replacement]  # what the real wait keeps when the Job is complete
        return provider.created[-1]

    provider.wait.side_effect = wait
    try:
        res = kb.KubernetesBackend(settings).run(_render_spec(), logging.getLogger("t"), _context())
    finally:
        kb._hook_class().final_pods = None  # the class default again
    assert res.result == {"rendered": 2, "skipped": 0}
    assert provider.core.read_namespaced_pod_log.call_args.kwargs["name"] == "job-render-pod-2"
    assert (
        provider.logs.call_args.kwargs["pod"].metadata.name == "job-render-pod-2"
    )  # streamed into the task log


def test_an_unpullable_image_fails_the_task_with_the_pull_error_and_cleans_up(settings, provider):
    import logging

    def wait(job_name, namespace, **kw):
        raise kb.ImageUnavailable("the image cannot be pulled: pod p on node n: ErrImageNeverPull: x")

    provider.wait.side_effect = wait
    with pytest.raises(JobFailed, match="ErrImageNeverPull"):
        kb.KubernetesBackend(settings).run(_render_spec(), logging.getLogger("t"), _context())
    provider.batch.delete_namespaced_job.assert_called_once()


def test_kill_deletes_the_job(settings, provider):
    op = kb.operator(_render_spec(), settings)
    op.job = op.build_job_request_obj(_context())
    op.on_kill()
    provider.batch.delete_namespaced_job.assert_called_once()
    assert provider.batch.delete_namespaced_job.call_args.kwargs["propagation_policy"] == "Foreground"


@pytest.mark.optin
@pytest.mark.slow
@pytest.mark.skipif(
    not (
        os.environ.get("KUBECONFIG")
        and os.environ.get("RENDERLAB_CONFIG")
        and os.environ.get("RENDERLAB_SHARE_ROOT")
    ),
    reason="opt-in: set KUBECONFIG, RENDERLAB_CONFIG (the lab stack file) and RENDERLAB_SHARE_ROOT (this "
    "machine's mount of the render share) to run the DAG against the real cluster",
)
def test_real_cluster_runs_the_dag(airflow_home, tmp_path):
    """The whole DAG, kubernetes backend, tiny render: needs the namespace, share PVC, Perforce Secret and the
    pushed images (make images) in the cluster the KUBECONFIG points at."""
    from tests.pipeline.conftest import run_dag

    share = Path(os.environ["RENDERLAB_SHARE_ROOT"])
    stack_file = os.environ["RENDERLAB_CONFIG"]
    config = load(stack_file)
    derived = pipeline_settings(config, recorded_images(config, stack_file))
    r = run_dag(
        airflow_home,
        share,
        share,
        {
            "song": "frere_groove",
            "frames": "60-65",
            "samples": 1,
            "resolution_percentage": 10,
            "frames_per_chunk": 3,
        },
        settings={**derived, "share_root": str(share)},
        extra_env={"KUBECONFIG": os.environ["KUBECONFIG"]},
        timeout=1800,
    )
    assert r["state"] == "success", r["log"][-4000:]


def test_every_job_has_a_timeout_from_the_plan_and_the_cluster_enforces_it(settings, no_cluster):
    """A Job that hangs on hostile input ends (activeDeadlineSeconds), and its task's
    own execution_timeout is never shorter than the Job's bound."""
    from renderlab.pipeline import run_plan

    specs, plan = dag_specs(settings, with_plan=True)
    the_plan = run_plan.RunPlan.of(plan)
    for spec in specs:
        kind = spec.name.split("-")[0]
        assert spec.timeout_s == the_plan.timeout_s(kind), spec.name
        assert spec.timeout_s <= run_plan.task_timeout_s(kind) - run_plan.TASK_MARGIN_S
        job = as_dict(kb.build_job(spec, settings))
        assert job["spec"]["activeDeadlineSeconds"] == spec.timeout_s
    render = the_plan.timeout_s("render")
    bigger = the_plan.model_copy(update={"frames_per_chunk": the_plan.frames_per_chunk * 4})
    assert render < bigger.timeout_s("render") <= run_plan.RENDER_CHUNK_MAX_S  # grows with the chunk


def test_render_chunks_are_bounded_before_any_is_made(settings):
    """The frame counts come from the share (the build's result); a billion frames, or
    a chunk of one frame over a long song, is one error naming frames_per_chunk, not a million tasks."""
    from renderlab.pipeline import run_plan, steps

    with mock.patch("renderlab.pipeline.settings.load", return_value=settings):
        plan = run_plan.resolve_run(
            {"params": {"song": "s", "changelist": 1, "loop": False, "frames_per_chunk": 1}, "run_id": "r"},
            settings,
        )
    built = {"frames": [1, 1_000_000_000], "blend": "scene/s.blend"}
    with pytest.raises(ValueError, match=r"1000000000 frames in chunks of 1 make 1000000000 render tasks.*"
                       r"frames_per_chunk to at least 976563"):  # fmt: skip
        steps.chunks(plan, built)
    assert len(steps.chunks(plan, {**built, "frames": [1, steps.MAX_CHUNKS]})) == steps.MAX_CHUNKS


def test_the_restricted_check_refuses_what_the_api_server_would(settings, no_cluster):
    """The checker above is not a formality: each break of `restricted` in a Job pod is named."""
    pod = as_dict(kb.build_job(dag_specs(settings)[1], settings))["spec"]["template"]["spec"]
    c = pod["containers"][0]
    c["securityContext"] |= {"privileged": True, "allowPrivilegeEscalation": True}
    pod["securityContext"].pop("seccompProfile")
    pod["hostNetwork"] = True
    pod["volumes"].append({"name": "root", "hostPath": {"path": "/"}})
    assert pod_security.violations(pod) == [
        "hostNetwork is on",
        "volume root is hostPath",
        f"{c['name']}: privileged",
        f"{c['name']}: allowPrivilegeEscalation is not false",
        f"{c['name']}: seccompProfile is unset",
    ]
