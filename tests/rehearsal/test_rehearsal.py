"""The lab rehearsal (`make lab-rehearsal`; tests/rehearsal/conftest.py says what it needs and reuses): one
render through the lab's Airflow and both Kubernetes nodes, checked like `make demo` checks its run."""

from __future__ import annotations

import json
import sys
import urllib.request

import pytest

from benchmarks import lab_scaling
from renderlab.lab.pipeline_settings import gallery_url
from renderlab.pipeline import run_plan, steps
from renderlab.pipeline.depot_songs import DEFAULT_SONG
from renderlab.workstation import demo, run_outputs, trigger
from tests.rehearsal.conftest import Rehearsal
from tests.rehearsal.recorder import Recorder

pytestmark = [pytest.mark.lab, pytest.mark.slow, pytest.mark.timeout(3 * 3600)]

FOLLOW_TIMEOUT_S = 2 * 3600
# The demo's small render, in chunks small enough that both nodes get several.
CONF = {
    "song": DEFAULT_SONG,
    "preset": "demo",
    "frames": demo.DEFAULTS["frames"],
    "samples": demo.DEFAULTS["samples"],
    "resolution_percentage": demo.DEFAULTS["resolution_percentage"],
    "frames_per_chunk": 12,
    "loop": False,
    "notify": "none",
}


def test_a_render_runs_through_the_lab_on_both_nodes(rehearsal: Rehearsal):
    r = rehearsal
    run_id = trigger.trigger(r.api, CONF, sys.stdout)  # `make render`'s own code, over the REST API
    folder = run_plan.run_folder_id(run_id)
    kubectl = [str(r.kubectl), f"--kubeconfig={r.lab.state / 'kubeconfig'}"]
    with Recorder(kubectl, r.config.pipeline.namespace, f"renderlab/run={steps._label(folder)}") as recorder:
        rc = trigger.follow(r.api, run_id, sys.stdout, poll=5, timeout=FOLLOW_TIMEOUT_S)
    records = recorder.save(r.records / f"{folder}.json")
    assert rc == 0, f"the run failed: {run_outputs.failure(r.share, folder)}"
    # The outputs on the share folder every lab host binds, checked as `make demo` checks its own.
    assert run_outputs.problems(r.share, folder) == []
    # The run's page, served by the cluster's docs site.
    with urllib.request.urlopen(f"{gallery_url(r.config)}runs/{folder}/", timeout=30) as page:
        assert page.status == 200 and folder in page.read().decode()
    # The chunks ran on both nodes; the figures for the issue note, printed from the same records.
    chunks = lab_scaling.chunks(records)
    nodes = {*r.config.hosts_by_role("control_plane"), *r.config.hosts_by_role("worker")}
    assert {c.node for c in chunks} == nodes
    print(json.dumps({"per_node": lab_scaling.per_node(chunks), "overhead_share": lab_scaling.overhead_share(chunks),
                      "render_wall_s": lab_scaling.wall_seconds(chunks)}, indent=1))  # fmt: skip
