"""`make lab-rehearsal`: one render through the whole local lab, on the cluster lane's lab (reused, never booted
or torn down here): the DAG on the lab's Airflow host, triggered through Airflow's REST API with `make render`'s
own code (renderlab.workstation.trigger), its Jobs on both Kubernetes nodes, the outputs on the one share folder
every lab host binds (renderlab/workstation/nspawn_lab/share_folder.py), the gallery page served by the cluster.

Opt-in: outside `make lab-rehearsal` every test skips with that command. Inside it, a missing prerequisite (no
lab up, no artifacts, no images, the cluster layer or Airflow's connection not there) is a skip that names the
command to run, and `make lab-rehearsal` runs with RENDERLAB_REQUIRE_LANES=1, so such a skip fails the target:
the rehearsal is never counted as passing without having run.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

from renderlab.lab import cluster_names, firewall
from renderlab.lab.config import LabConfig, load
from renderlab.lab.pipeline_settings import recorded_images
from renderlab.pipeline.settings import KUBE_CONN_ID
from renderlab.workstation import trigger
from renderlab.workstation.nspawn_lab import lifecycle as locallab
from renderlab.workstation.nspawn_lab import share_folder
from renderlab.workstation.nspawn_lab.options import ROOT, LabError, LabOptions

LANE = "RENDERLAB_REHEARSAL_LANE"
UNAVAILABLE = "local lab unavailable here"  # tests/conftest.py: under RENDERLAB_REQUIRE_LANES=1 a failure
KEEP_A_LAB = "`RENDERLAB_LAB_KEEP=1 make cluster-test`, then `make lab-rehearsal`"


@dataclass
class Rehearsal:
    lab: locallab.Lab
    config: LabConfig
    kubectl: Path
    api: trigger.Api

    @property
    def share(self) -> Path:
        """The share as this machine sees it: the folder nspawn binds into every lab host."""
        return share_folder.host_folder(self.lab.state)

    @property
    def records(self) -> Path:
        return self.lab.state / "rehearsal"

    def k(self, *args: str, timeout: float = 120) -> str:
        proc = subprocess.run(
            [str(self.kubectl), f"--kubeconfig={self.lab.state / 'kubeconfig'}", *args],
            capture_output=True, text=True, timeout=timeout, check=False,
        )  # fmt: skip
        if proc.returncode != 0:
            raise AssertionError(f"kubectl {' '.join(args)} (exit {proc.returncode}): {proc.stderr.strip()}")
        return proc.stdout


def _missing(what: str, run: str) -> None:
    pytest.skip(f"{UNAVAILABLE} for the rehearsal: {what}; run {run}")


@pytest.fixture(scope="session")
def rehearsal() -> Rehearsal:
    if os.environ.get(LANE) != "1":
        pytest.skip(
            "the lab rehearsal is opt-in: run `make lab-rehearsal` (on a lab `make cluster-test` left up)"
        )
    try:
        locallab.preflight()
    except LabError as e:
        pytest.skip(f"{UNAVAILABLE}: {e}")
    from tests.cluster.conftest import _reused  # the cluster lane's own reuse of a running lab

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
    images = recorded_images(config, str(s.base_config))
    if not {"blender", "fetch"} <= set(images):
        _missing(f"no recorded blender and fetch images for {s.base_config}", "`make images`")
    secrets = yaml.safe_load((lab.secrets).read_text())
    (airflow_host,) = config.hosts_by_role("airflow")
    api = trigger.Api(
        f"http://{config.address(airflow_host)}:{firewall.AIRFLOW_API}",
        "admin",
        secrets["renderlab_airflow_admin_password"],
    )
    r = Rehearsal(lab, config, kubectl, api)
    ns = config.pipeline.namespace
    try:
        r.k("-n", ns, "get", "pvc", cluster_names.SHARE_PVC)
    except AssertionError as e:
        _missing(
            f"the cluster layer is not applied ({e})", "the cluster layer: `make cluster-test` applies it"
        )
    try:
        api.get(f"/api/v2/dags/{trigger.DAG_ID}")
        api.get(f"/api/v2/connections/{KUBE_CONN_ID}")
    except (trigger.TriggerError, trigger.ApiError) as e:
        _missing(f"the lab's Airflow has no render DAG or Kubernetes connection ({e})",
                 "`make lab-site` and site.yml's `--tags k8s_connection`")  # fmt: skip
    r.records.mkdir(exist_ok=True)
    # The lab's file:// depot (no p4d here), on the share folder where the fetch pod reads it.
    shutil.copytree(ROOT / "depot" / "songs", share_folder.depot_folder(lab.state), dirs_exist_ok=True)
    return r
