"""Fixtures for the container tests: the images `make images` builds (built once per session, cached by the
engine between sessions), a share folder bind-mounted as the Jobs' PVC, and a runner that plays the pod
spec the kubernetes backend generates for a Job with `podman kube play`, exactly as generated."""

from __future__ import annotations

import json
import logging
import os
import shutil
import subprocess
import sys
import time
import uuid
from pathlib import Path
from unittest import mock

import pytest
import yaml

from renderlab.lab import config, image_refs
from renderlab.lab.pipeline_settings import pipeline_settings, recorded_images
from renderlab.pipeline.jobspec import JobFailed, JobResult, JobSpec, parse_result_line
from renderlab.pipeline.settings import Settings
from renderlab.workstation import images

REPO = Path(__file__).resolve().parents[2]
CONFIG = REPO / "Pulumi.example.yaml"
HOOK = "airflow.providers.cncf.kubernetes.hooks.kubernetes.KubernetesHook"
log = logging.getLogger("tests.images")


def podman(*args: str, check: bool = True, timeout: float = 600) -> subprocess.CompletedProcess:
    res = subprocess.run(
        ["podman", *args],
        capture_output=True,
        text=True,
        env=images.engine_env(),
        timeout=timeout,
        check=False,
    )
    if check:
        assert res.returncode == 0, f"podman {' '.join(args[:3])}: {res.stderr[-2000:]}"
    return res


def make_images() -> subprocess.CompletedProcess:
    """`make images` without pushing: its command line, under nice, into this session's record folder."""
    code = (
        "import sys; from pathlib import Path; from renderlab.lab import image_refs; "
        "from renderlab.workstation import images; image_refs.RECORDS = Path(sys.argv[1]); "
        "sys.exit(images.main(sys.argv[2:]))"
    )
    argv = ["build", "--push", "never", "--config", str(CONFIG)]
    return subprocess.run(
        ["nice", "-n", "19", sys.executable, "-c", code, str(image_refs.RECORDS), *argv],
        env={**os.environ, "PYTHONPATH": str(REPO)},
        capture_output=True,
        text=True,
        check=False,
    )


@pytest.fixture(scope="session")
def records(tmp_path_factory):
    """This session's record folder (what the user's `make images` recorded stays untouched)."""
    with mock.patch.object(image_refs, "RECORDS", tmp_path_factory.mktemp("image-records")):
        yield image_refs.RECORDS


@pytest.fixture(scope="session")
def built(records) -> dict[str, dict]:
    """name -> {tag, digest?, built: {image_id, ...}, ref}: what `make images` built and recorded."""
    res = make_images()
    assert res.returncode == 0, res.stderr[-3000:]
    (records / "build.log").write_text(res.stderr)
    refs = recorded_images(config.load(CONFIG), str(CONFIG))
    return {name: {**entry, "ref": refs[name]} for name, entry in image_refs.recorded(CONFIG).items()}


@pytest.fixture
def share(tmp_path) -> Path:
    """The share folder, owned by the lab's share uid like the real one, with the bundled depot on it."""
    root = tmp_path / "share"
    shutil.copytree(REPO / "depot" / "songs", root / "depot" / "songs")
    os.chown(root, 2000, 2000)
    for d, _, files in os.walk(root):
        for f in [d, *(os.path.join(d, x) for x in files)]:
            os.chown(f, 2000, 2000)
    return root


@pytest.fixture
def settings(share, built) -> Settings:
    """The lab's pipeline settings (images as recorded), the share's PVC mapped to the share folder."""
    claim = f"rl-test-{uuid.uuid4().hex[:10]}"
    podman("volume", "create", "--opt", "type=none", "--opt", "o=bind", "--opt", f"device={share}", claim)
    cfg = config.load(CONFIG)
    yield Settings.model_validate(
        {
            **pipeline_settings(cfg, recorded_images(cfg, str(CONFIG))),
            "share_root": str(share),
            "share_pvc": claim,
            "depot": "file:///share/depot/songs",
        }
    )
    podman("volume", "rm", "-f", claim, check=False)


class KubePlay:
    """A backend for the tests: the kubernetes backend's Job, its pod spec run as is by `podman kube play`."""

    def __init__(self, settings: Settings, tmp: Path):
        self.settings = settings
        self.tmp = tmp
        self.pods: list[dict] = []
        self.containers: list[dict] = []

    def pod(self, spec: JobSpec) -> dict:
        from kubernetes.client import ApiClient

        from renderlab.pipeline.backends import kubernetes as kb

        with mock.patch(f"{HOOK}.is_in_cluster", new_callable=mock.PropertyMock, return_value=False):
            job = ApiClient().sanitize_for_serialization(kb.build_job(spec, self.settings))
        template = job["spec"]["template"]
        meta = {"name": job["metadata"]["name"], "labels": template["metadata"].get("labels", {})}
        return {"apiVersion": "v1", "kind": "Pod", "metadata": meta, "spec": template["spec"]}

    def run(self, spec: JobSpec, log: logging.Logger = log, context: dict | None = None) -> JobResult:
        pod = self.pod(spec)
        self.pods.append(pod)
        path = self.tmp / f"{pod['metadata']['name']}.yaml"
        path.write_text(yaml.safe_dump(pod))
        start = time.monotonic()
        container = f"{pod['metadata']['name']}-{pod['spec']['containers'][0]['name']}"
        try:
            # No network: the Jobs read and write only the share (a p4:// fetch would need one).
            podman("kube", "play", "--network", "none", str(path))
            code = int(podman("wait", container, timeout=spec.timeout_s or 1200).stdout.strip())
            self.containers.append(json.loads(podman("container", "inspect", container).stdout)[0])
            logs = podman("logs", container)
        finally:
            podman("kube", "down", str(path), check=False)
        out, err = logs.stdout.splitlines(), logs.stderr.splitlines()
        if code != 0:
            tail = "\n".join((err or out)[-5:])
            raise JobFailed(f"job {spec.name}: exited with status {code}; last output:\n{tail}")
        return JobResult(
            name=spec.name,
            exit_code=code,
            result=parse_result_line(spec.name, out),
            seconds=round(time.monotonic() - start, 3),
        )


@pytest.fixture
def kube_play(settings, tmp_path):
    backend = KubePlay(settings, tmp_path)
    with mock.patch("renderlab.pipeline.settings.load", return_value=settings), \
         mock.patch("renderlab.pipeline.backends.get", return_value=backend):  # fmt: skip
        yield backend
