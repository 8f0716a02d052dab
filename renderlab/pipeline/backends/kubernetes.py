"""The kubernetes backend: a `JobSpec` becomes a batch/v1 Job run by the cncf.kubernetes provider.

`operator(spec)` builds the provider's KubernetesJobOperator (share PVC mounted at the working directory,
Secrets by reference, resources, backoffLimit, TTL); `run()` executes it inside the calling task: the provider
creates the Job, waits, streams the pod's logs into the task log and deletes the Job on kill. We read the
result line from the pod's log, then delete the Job (TTL is the backstop if the worker dies first). A failed Job
is kept for its TTL: its pod's log stays readable, and the next try of the same work prefers another node than
the ones its failed pods ran on (a bad node must not eat every retry). A try whose task process died with the
Airflow scheduler (a restart SIGKILLs the LocalExecutor's tasks, so no on_kill deletes their Job) left a Job that
still runs or has succeeded: the next try waits on that Job instead of submitting a second one for the same work.
"""

from __future__ import annotations

import functools
import logging
import time
from datetime import UTC, datetime

from kubernetes.client import models as k8s

from renderlab.pipeline.jobspec import JobFailed, JobResult, JobSpec, parse_merged_result
from renderlab.pipeline.settings import Settings

CONTAINER = "base"  # the provider's name for the main container


def _resources(spec: JobSpec) -> k8s.V1ResourceRequirements:
    r = spec.resources
    requests = {"cpu": r.cpu, "memory": r.memory}
    limits = {"cpu": r.cpu_limit or r.cpu, "memory": r.memory_limit or r.memory}
    if r.gpu:
        limits["nvidia.com/gpu"] = str(r.gpu)
    return k8s.V1ResourceRequirements(requests=requests, limits=limits)


POD_POLL_S = 10
JOB_NAME_LABEL = "batch.kubernetes.io/job-name"  # the Job controller labels its pods with it
HOSTNAME_LABEL = "kubernetes.io/hostname"
# The labels that say "the same piece of work" across tries (renderlab.pipeline.steps sets them).
SAME_WORK = ("renderlab/run", "renderlab/work")
# A container waiting for these never starts: the image cannot be had. ErrImagePull/ImagePullBackOff may be a
# registry's passing failure, so those get PULL_GRACE_S of retries first; the other two are final at once.
PULL_RETRIED = {"ErrImagePull", "ImagePullBackOff"}
PULL_FINAL = {"InvalidImageName", "ErrImageNeverPull"}
PULL_GRACE_S = 60.0


# A pod on a node that stopped answering is evicted after this long (the cluster's default is 300 s), so the
# task's retry can run the work elsewhere; every step resumes (a retry redoes nothing already valid).
NODE_LOST_TOLERATION_S = 30
# A pod being deleted that has not stopped after its grace period (30 s) plus this margin will not stop: its
# node is gone, and the Job waits for it (no Failed condition, only FailureTarget) until the node returns.
STUCK_DELETING_S = 60.0


class ImageUnavailable(Exception):
    """The Job's pod cannot get its image: failing now beats waiting for the Job's deadline (hours)."""


class PodLost(Exception):
    """The Job's pod went with its node: the try has failed, though the Job will not say so while the node is
    away."""


def node_lost_tolerations() -> list[k8s.V1Toleration]:
    return [
        k8s.V1Toleration(key=f"node.kubernetes.io/{taint}", operator="Exists", effect="NoExecute",
                         toleration_seconds=NODE_LOST_TOLERATION_S)
        for taint in ("unreachable", "not-ready")
    ]  # fmt: skip


def stuck_deleting(pods: list, now) -> str | None:
    """A pod whose deletion has not finished STUCK_DELETING_S after its grace period ran out, or None."""
    for pod in pods:
        meta = pod.metadata
        if meta.deletion_timestamp is None or (pod.status and pod.status.phase in ("Succeeded", "Failed")):
            continue
        overdue = (now - meta.deletion_timestamp).total_seconds()
        if overdue >= STUCK_DELETING_S:
            why = next(
                (f"{c.reason}: {c.message}" for c in (pod.status.conditions or []) if c.type == "DisruptionTarget"),
                "deleted",
            ) if pod.status else "deleted"  # fmt: skip
            node = pod.spec.node_name if pod.spec else None
            return (
                f"pod {meta.name} on node {node} has not stopped {overdue:.0f} s after its deletion ({why})"
            )
    return None


def unpullable(pods: list, since: dict[str, float], now: float) -> str | None:
    """Why a pod of the Job will never start for want of its image, or None. `since` remembers when each pod
    was first seen failing to pull (updated here)."""
    for pod in pods:
        name = pod.metadata.name
        for cs in (pod.status and pod.status.container_statuses) or []:
            waiting = cs.state and cs.state.waiting
            reason = waiting.reason if waiting else None
            if reason not in PULL_RETRIED | PULL_FINAL:
                continue
            first = since.setdefault(name, now)
            if reason in PULL_FINAL or now - first >= PULL_GRACE_S:
                node = pod.spec.node_name if pod.spec else None
                return f"pod {name} on node {node}: {reason}: {waiting.message or cs.image}"
    return None


@functools.cache
def _hook_class():
    from airflow.providers.cncf.kubernetes.hooks.kubernetes import KubernetesHook

    class WatchingHook(KubernetesHook):
        """The provider's hook, whose Job wait also looks at the Job's pods on every poll.

        The provider polls only the Job's status, and a pod that cannot pull its image leaves the Job neither
        complete nor failed until its activeDeadlineSeconds: a wrong image reference hung the task for hours.
        The pods listed when the Job finishes are kept: a pod deleted mid-run was replaced by the Job
        controller, and its logs and result are read from the pod that finished, not the one first seen.
        """

        final_pods: list | None = None

        def wait_until_job_complete(self, job_name: str, namespace: str, job_poll_interval: float = 10):
            since: dict[str, float] = {}
            while True:
                job = self.get_job_status(job_name=job_name, namespace=namespace)
                pods = self.core_v1_client.list_namespaced_pod(
                    namespace=namespace, label_selector=f"{JOB_NAME_LABEL}={job_name}"
                ).items
                if self.is_job_complete(job=job):
                    done = [p for p in pods if p.status and p.status.phase in ("Succeeded", "Failed")]
                    self.final_pods = done or None
                    return job
                why = unpullable(pods, since, time.monotonic())
                if why:
                    raise ImageUnavailable(f"the image cannot be pulled: {why}")
                lost = stuck_deleting(pods, datetime.now(UTC))
                if lost:
                    raise PodLost(f"{lost}: its node is lost; the try has failed")
                time.sleep(job_poll_interval)

    return WatchingHook


@functools.cache
def _queued_operator_class():
    from airflow.providers.cncf.kubernetes.operators.job import KubernetesJobOperator

    class QueuedJobOperator(KubernetesJobOperator):
        """The provider's Job operator, patient while the cluster holds the Job's pod back, and reading the pod
        that finished (see WatchingHook).

        The provider lists the Job's pods a few times back to back and fails when none is there yet. A Job whose
        pod the namespace's quota refuses for now (more chunks than the quota admits at once) gets it created by
        the Job controller as soon as another finishes: the lab rehearsal's chunks failed with "No pods running"
        while the quota was full. Here the task waits for the pod, as long as the Job itself may live.
        """

        # A Job of the same work left by an earlier try (KubernetesBackend._adoptable): waited on, not doubled.
        adopted: k8s.V1Job | None = None

        def create_job(self, job_request_obj):
            if self.adopted is None:
                return super().create_job(job_request_obj)
            self.log.info(
                "Job %s of an earlier try of this work is %s: waiting on it instead of submitting another",
                self.adopted.metadata.name, "complete" if _finished(self.adopted) else "still running",
            )  # fmt: skip
            return self.adopted

        @functools.cached_property
        def hook(self):
            return _hook_class()(
                conn_id=self.kubernetes_conn_id,
                in_cluster=self.in_cluster,
                config_file=self.config_file,
                cluster_context=self.cluster_context,
            )

        # The provider sets `self.pods` to the pods it first found, then streams their logs once the Job is
        # complete; after the wait these are the pods that finished (the first may be gone).
        @property
        def pods(self):
            return self.hook.final_pods or getattr(self, "_first_pods", None)

        @pods.setter
        def pods(self, value):
            self._first_pods = value

        def get_pods(self, pod_request_obj, context, *, exclude_checked: bool = True):
            # This Job's own pods, by the label the Job controller gives them: the provider's selector (the
            # task's labels) also finds the pods of an earlier try's kept Job, and not an adopted Job's alone.
            selector = f"{JOB_NAME_LABEL}={self.job.metadata.name}"
            namespace = self.job.metadata.namespace
            deadline = time.monotonic() + (self.active_deadline_seconds or 3600)
            told = False
            while not (
                pods := self.client.list_namespaced_pod(namespace=namespace, label_selector=selector).items
            ):
                if time.monotonic() > deadline:
                    raise RuntimeError(f"no pod of Job {self.job.metadata.name} appeared ({selector})")
                if not told:
                    self.log.info(
                        "the Job's pod is not created yet (the namespace's quota is full?); waiting"
                    )
                    told = True
                time.sleep(POD_POLL_S)
            for pod in pods:
                labels = pod.metadata.labels or {}
                self.log.info("pod %s of Job %s (try %s)", pod.metadata.name, self.job.metadata.name,
                              labels.get("try_number", "?"))  # fmt: skip
            return pods

    QueuedJobOperator.__qualname__ = "QueuedJobOperator"  # its logger's name
    return QueuedJobOperator


def operator(spec: JobSpec, settings: Settings, task_id: str | None = None):
    """The provider's operator for this Job (not run yet)."""
    from airflow.providers.cncf.kubernetes.secret import Secret

    KubernetesJobOperator = _queued_operator_class()

    share = k8s.V1Volume(
        name="share",
        persistent_volume_claim=k8s.V1PersistentVolumeClaimVolumeSource(claim_name=settings.share_pvc),
    )
    mount = k8s.V1VolumeMount(name="share", mount_path=settings.share_mount)
    # The root filesystem is read-only; the images keep HOME and TMPDIR on /tmp.
    tmp = k8s.V1Volume(name="tmp", empty_dir=k8s.V1EmptyDirVolumeSource())
    tmp_mount = k8s.V1VolumeMount(name="tmp", mount_path="/tmp")
    # Only the working directory needs a full pod spec; the provider merges it with its own.
    pod = k8s.V1Pod(
        spec=k8s.V1PodSpec(
            containers=[k8s.V1Container(name=CONTAINER, working_dir=settings.share_mount)],
        )
    )
    env = {"RENDERLAB_SHARE": settings.share_mount, **spec.env}
    if spec.resources.gpu:
        env.setdefault("NVIDIA_VISIBLE_DEVICES", "all")
        env.setdefault("NVIDIA_DRIVER_CAPABILITIES", "compute,utility")
    return KubernetesJobOperator(
        task_id=task_id or spec.name,
        kubernetes_conn_id=settings.kube_conn_id,
        namespace=settings.namespace,
        name=spec.name,
        random_name_suffix=True,
        image=settings.image(spec.image),
        image_pull_policy="IfNotPresent",
        cmds=spec.command[:1],
        arguments=spec.command[1:],
        env_vars=env,
        secrets=[Secret("env", ref.env, ref.secret, ref.key) for ref in spec.secrets],
        volumes=[share, tmp],
        volume_mounts=[mount, tmp_mount],
        full_pod_spec=pod,
        container_resources=_resources(spec),
        labels={"app.kubernetes.io/part-of": "renderlab", "renderlab/image": spec.image, **spec.labels},
        security_context=k8s.V1PodSecurityContext(
            run_as_user=settings.run_as_uid,
            run_as_group=settings.run_as_uid,
            fs_group=settings.run_as_uid,
            run_as_non_root=True,
            # The namespace enforces Pod Security `restricted`, which asks for the runtime's seccomp profile.
            seccomp_profile=k8s.V1SeccompProfile(type="RuntimeDefault"),
        ),
        container_security_context=k8s.V1SecurityContext(
            allow_privilege_escalation=False,
            capabilities=k8s.V1Capabilities(drop=["ALL"]),
            read_only_root_filesystem=True,
        ),
        tolerations=node_lost_tolerations(),
        backoff_limit=spec.backoff_limit,
        ttl_seconds_after_finished=spec.ttl_seconds,
        active_deadline_seconds=spec.timeout_s,
        parallelism=1,
        completions=1,
        wait_until_job_complete=True,
        job_poll_interval=5,
        get_logs=True,
        # Keep the pod until we have read the result line; the Job (and its pod) is deleted after.
        on_finish_action="keep_pod",
        on_kill_action="delete_pod",
        on_kill_propagation_policy="Foreground",
        do_xcom_push=False,
        deferrable=False,
    )


def _conditions(job, *types: str) -> bool:
    conditions = (job.status.conditions if job is not None and job.status else None) or []
    return any(c.type in types and c.status == "True" for c in conditions)


def _finished(job) -> bool:
    return _conditions(job, "Complete", "Failed")


def _failed(job) -> bool:
    return _conditions(job, "Failed")


def avoid_nodes(nodes: list[str]) -> k8s.V1Affinity:
    """Prefer (not require) any node but these: with one node left, the work still runs there."""
    term = k8s.V1NodeSelectorTerm(
        match_expressions=[k8s.V1NodeSelectorRequirement(key=HOSTNAME_LABEL, operator="NotIn", values=nodes)]
    )
    return k8s.V1Affinity(
        node_affinity=k8s.V1NodeAffinity(
            preferred_during_scheduling_ignored_during_execution=[
                k8s.V1PreferredSchedulingTerm(weight=100, preference=term)
            ]
        )
    )


def build_job(spec: JobSpec, settings: Settings, context: dict | None = None) -> k8s.V1Job:
    """The exact batch/v1 Job the provider would submit for this spec."""
    return operator(spec, settings).build_job_request_obj(context)


def _pod_log(op, pod, tail: int) -> str:
    """The last `tail` lines of the pod's log as text. Read raw and decoded here: the kubernetes client (36.x)
    hands a preloaded log back as the repr of its bytes ("b'...\\n...'"), one line that no result parses from
    (met on the lab's real cluster)."""
    resp = op.hook.core_v1_client.read_namespaced_pod_log(
        name=pod.metadata.name,
        namespace=pod.metadata.namespace,
        container=CONTAINER,
        tail_lines=tail,
        _preload_content=False,
    )
    return resp.data.decode("utf-8", errors="replace")


class KubernetesBackend:
    def __init__(self, settings: Settings):
        self.settings = settings

    def run(self, spec: JobSpec, log: logging.Logger, context: dict | None = None) -> JobResult:
        op = operator(spec, self.settings, task_id=(context or {}).get("task_id"))
        op.adopted = self._adoptable(op, spec)
        avoid = [] if op.adopted else self._failed_nodes(op, spec)
        if avoid:
            log.info(
                "job %s: earlier tries failed on %s; another node is preferred", spec.name, ", ".join(avoid)
            )
            op.affinity = avoid_nodes(avoid)
        start = time.monotonic()
        failed = True
        try:
            try:
                op.execute(context or {})
            except Exception as e:
                # The entrypoint's own last words (its one error line) say more than the Job's status.
                tail = "\n".join(self._log_lines(op, 10)[-5:])
                tail = f"; last output:\n{tail}" if tail else ""
                raise JobFailed(f"job {spec.name}: the Kubernetes Job failed: {e}{tail}") from e
            pods = list(getattr(op, "pods", None) or [])
            succeeded = [p for p in pods if p.status and p.status.phase == "Succeeded"] or pods
            if not succeeded:
                raise JobFailed(f"job {spec.name}: the provider found no pod to read the result from")
            result = parse_merged_result(spec.name, _pod_log(op, succeeded[0], 20).splitlines())
            failed = False
        finally:
            if failed and _finished(op.job):  # one still active (its image, its node lost) goes now
                self._keep(op, log)
            else:
                self._cleanup(op, log)
        seconds = round(time.monotonic() - start, 3)
        return JobResult(name=spec.name, exit_code=0, result=result, seconds=seconds)

    @staticmethod
    def _log_lines(op, tail: int) -> list[str]:
        """The last lines of the Job's pod log, or none when there is no pod (never raises)."""
        try:
            pod = list(getattr(op, "pods", None) or [])[0]
            return [ln for ln in _pod_log(op, pod, tail).splitlines() if ln.strip()]
        except Exception:
            return []

    def _adoptable(self, op, spec: JobSpec) -> k8s.V1Job | None:
        """A Job of the same work that an earlier try submitted and that runs still or has succeeded: the one
        that succeeded, else the newest. A listing error fails the try (better than a second Job)."""
        if not all(k in spec.labels for k in SAME_WORK):
            return None
        selector = ",".join(f"{k}={spec.labels[k]}" for k in SAME_WORK)
        jobs = op.job_client.list_namespaced_job(
            namespace=self.settings.namespace, label_selector=selector
        ).items
        usable = [j for j in jobs if j.metadata.deletion_timestamp is None and not _failed(j)]
        if not usable:
            return None
        return max(
            usable,
            key=lambda j: (_finished(j), j.metadata.creation_timestamp or datetime.min.replace(tzinfo=UTC)),
        )

    def _failed_nodes(self, op, spec: JobSpec) -> list[str]:
        """The nodes where earlier tries of the same work failed (their Jobs are kept for the TTL)."""
        if not all(k in spec.labels for k in SAME_WORK):
            return []
        selector = ",".join(f"{k}={spec.labels[k]}" for k in SAME_WORK)
        try:
            pods = op.hook.core_v1_client.list_namespaced_pod(
                namespace=self.settings.namespace, label_selector=selector
            ).items
        except Exception:  # a preference only: never fail a try for want of it
            return []
        return sorted(
            {p.spec.node_name for p in pods if p.status and p.status.phase == "Failed" and p.spec.node_name}
        )

    @staticmethod
    def _keep(op, log: logging.Logger) -> None:
        job = op.job
        if job is not None:
            log.info(
                "failed Job %s is kept for %s s (ttlSecondsAfterFinished) for its log: kubectl -n %s logs job/%s",
                job.metadata.name, job.spec.ttl_seconds_after_finished if job.spec else "?",
                job.metadata.namespace, job.metadata.name,
            )  # fmt: skip

    @staticmethod
    def _cleanup(op, log: logging.Logger) -> None:
        job = op.job
        if job is None:
            return
        try:
            op.job_client.delete_namespaced_job(
                name=job.metadata.name, namespace=job.metadata.namespace, propagation_policy="Foreground"
            )
        except Exception as e:  # TTL removes it anyway; never hide the Job's own outcome behind this
            log.warning("could not delete Job %s (ttlSecondsAfterFinished will): %s", job.metadata.name, e)
