"""`make lab-rehearsal`: one render through the whole local lab, on a lab already up under the same
RENDERLAB_LAB_PREFIX (reused, never booted or torn down here): the one `RENDERLAB_LAB_KEEP=1 make cluster-test`
leaves up (the session lab of tests/lab_session.py, kept), or one `make lab-local` booted on which the cluster
lane has run. The DAG on the lab's Airflow host, triggered through Airflow's REST API with `make render`'s own
code (renderlab.workstation.trigger: https:// with the lab CA's certificate as `make lab-ca-cert` writes it), its
Jobs on both Kubernetes nodes, the outputs on the one share folder every lab host binds
(renderlab/workstation/nspawn_lab/share_folder.py), the gallery page served by the cluster's docs site.

What it puts in place itself, as a user of such a lab would: the Jobs' images in every node's containerd
(tests/rehearsal/node_images.py: imported, not pulled; the registry's push and pull are tests/lab/test_make_lab.py's), and on
the Airflow host the Variable naming those images and the Kubernetes connection (site.yml's `airflow` and
`k8s_connection` steps, run only when missing).

Opt-in: outside `make lab-rehearsal` every test skips with that command. Inside it, a missing prerequisite (no
lab up, no artifacts, no images, the cluster layer not there) is a skip that names the command to run, and
`make lab-rehearsal` runs with RENDERLAB_REQUIRE_LANES=1, so such a skip fails the target: the rehearsal is never
counted as passing without having run.
"""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest

from infra import manifests
from renderlab.lab import cluster_names
from renderlab.lab.config import load
from renderlab.lab.pipeline_settings import recorded_images
from renderlab.workstation import images, trigger
from renderlab.workstation.nspawn_lab import lifecycle as locallab
from renderlab.workstation.nspawn_lab import share_folder
from renderlab.workstation.nspawn_lab.options import ROOT, LabError, LabOptions
from tests.cluster.conftest import Cluster, _reused  # the cluster lane's own reuse of a running lab
from tests.rehearsal import lab_airflow, node_images

LANE = "RENDERLAB_REHEARSAL_LANE"
UNAVAILABLE = "local lab unavailable here"  # tests/conftest.py: under RENDERLAB_REQUIRE_LANES=1 a failure
LAB_ENV = "RENDERLAB_LAB_BRIDGE, RENDERLAB_LAB_SUBNET and RENDERLAB_LAB_PREFIX"
# The share a filesystem of its own size, as a real one is: the share-full fault fills it.
KEEP_A_LAB = (
    "`RENDERLAB_LAB_KEEP=1 RENDERLAB_LAB_SHARE_SIZE=8G make cluster-test`, then `make lab-rehearsal` (both "
    f"with the same {LAB_ENV})"
)


@dataclass(kw_only=True)
class Rehearsal(Cluster):
    api: trigger.Api

    @property
    def share(self) -> Path:
        """The share as this machine sees it: the folder nspawn binds into every lab host."""
        return share_folder.host_folder(self.lab.state)

    @property
    def records(self) -> Path:
        return self.lab.state / "rehearsal"


def _missing(what: str, run: str) -> None:
    pytest.skip(f"{UNAVAILABLE} for the rehearsal: {what}; run {run}")


def _images_on_nodes(c: Cluster, refs: dict[str, str], config: str) -> None:
    """node_images' plan carried out: each image saved once from the engine that built it, then copied and
    imported on every node that lacks it; afterwards every node holds every reference."""

    def present() -> dict[str, set[str]]:
        out = {}
        for m in c.nodes():
            proc = c.ssh(m, "sudo ctr -n k8s.io images ls -q")
            assert proc.returncode == 0, f"{m.name}: ctr images ls: {proc.stderr.strip()}"
            out[m.name] = node_images.listed(proc.stdout)
        return out

    steps = node_images.plan(refs, present(), config)
    if not steps:
        return
    tool = images.engine()
    for step in steps:
        if not images.exists(tool, step.ref):
            _missing(
                f"{step.ref} is recorded but {tool} no longer holds it",
                f"`{node_images.BUILD} --config {config}`",
            )
    work = c.lab.state / "rehearsal-images"
    work.mkdir(exist_ok=True)
    for step in steps:
        archive = work / f"{step.name}.tar"
        subprocess.run(
            node_images.save_command(tool, step.ref, str(archive)),
            check=True,
            env=images.engine_env(),
            timeout=1800,
        )
        try:
            for node in step.nodes:
                m = c.host_named(node)
                c.scp(archive, m, f"/tmp/{archive.name}")
                out = c.ssh(
                    m,
                    f"sudo ctr -n k8s.io images import /tmp/{archive.name}; rc=$?; rm -f /tmp/{archive.name}; exit $rc",
                    timeout=1800,
                )
                assert out.returncode == 0, f"{node}: ctr images import {step.ref}: {out.stderr.strip()}"
        finally:
            archive.unlink(missing_ok=True)
    left = node_images.plan(refs, present(), config)
    assert left == [], f"imported, yet the nodes still lack {left}"


def _airflow_ready(c: Cluster, refs: dict[str, str]) -> None:
    """The Airflow host's Variable names exactly `refs` and its Kubernetes connection is defined; else the
    site.yml steps that do it, on this lab, with the inventory `_reused` wrote from this tree."""
    host = c.host("airflow")
    grep = c.ssh(host, f"sudo grep -F -- {shlex.quote(lab_airflow.VARIABLE_LINE)} {lab_airflow.ENV_FILE}")
    conn = c.ssh(host, f"sudo test -s {lab_airflow.CONNECTIONS_FILE}")
    if 255 in (grep.returncode, conn.returncode):  # ssh's own failure, not an answer
        pytest.fail(
            f"cannot reach the Airflow host {host.address} over SSH: {grep.stderr.strip()}", pytrace=False
        )
    tags = lab_airflow.site_tags(lab_airflow.variable_images(grep.stdout), refs, conn.returncode == 0)
    if not tags:
        return
    run = locallab.run_site(c.lab, "rehearsal-site.log", ["--tags", ",".join(tags)])
    if run.real_failures or run.rc != 0:
        pytest.fail(f"site.yml --tags {','.join(tags)} failed; see {run.log}:\n{run.why()}", pytrace=False)


@pytest.fixture(scope="session")
def rehearsal() -> Rehearsal:
    if os.environ.get(LANE) != "1":
        pytest.skip(f"the lab rehearsal is opt-in: run {KEEP_A_LAB}")
    try:
        locallab.preflight()
    except LabError as e:
        pytest.skip(f"{UNAVAILABLE}: {e}")
    s = LabOptions.from_env()
    lab = _reused(s)
    if lab is None:
        _missing(f"no lab is up under RENDERLAB_LAB_PREFIX={s.prefix}", KEEP_A_LAB)
    config = load(lab.stack_file)
    kubectl = locallab.k8s_artifacts_dir(config) / "bin" / "kubectl"
    if not kubectl.is_file():
        _missing(f"no kubectl in {kubectl.parent}", "`make k8s-artifacts`")
    if not (lab.state / "kubeconfig").is_file():
        _missing(f"the lab at {lab.state} has no kubeconfig (no cluster built on it)", KEEP_A_LAB)
    c = Cluster(lab, config, kubectl)
    refs = recorded_images(config, str(s.base_config))
    try:
        node_images.check(refs, str(s.base_config))
    except node_images.NotImportable as e:
        pytest.skip(f"{UNAVAILABLE} for the rehearsal: {e}")
    try:
        c.k("-n", config.pipeline.namespace, "get", "pvc", cluster_names.SHARE_PVC)
        c.k("-n", manifests.DOCS_NS, "rollout", "status", "deployment/docs", "--timeout=120s", timeout=150)
    except AssertionError as e:
        _missing(
            f"the cluster layer with its docs site is not up ({e})",
            f"{KEEP_A_LAB}: its layer and docs checks apply it",
        )
    _images_on_nodes(c, refs, str(s.base_config))
    _airflow_ready(c, refs)
    try:
        api = lab_airflow.api(config, lab.state, lab.secrets)
        lab_airflow.wait_for_dag(api)
    except (trigger.TriggerError, trigger.ApiError) as e:
        pytest.fail(f"the lab's Airflow does not serve the render DAG: {e}", pytrace=False)
    r = Rehearsal(lab, config, kubectl, api=api)
    r.records.mkdir(exist_ok=True)
    # The lab's file:// depot (no p4d here), on the share folder where the fetch pod reads it.
    shutil.copytree(ROOT / "depot" / "songs", share_folder.depot_folder(lab.state), dirs_exist_ok=True)
    return r
