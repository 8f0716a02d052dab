"""The lab rehearsal (`make lab-rehearsal`; tests/rehearsal/conftest.py says what it needs and reuses): one
render through the lab's Airflow and both Kubernetes nodes, checked like `make demo` checks its run; then the
same render with the worker cordoned, for benchmarks/lab_scaling.py's one-node vs both-nodes figures."""

from __future__ import annotations

import json
import urllib.request

import pytest

from benchmarks import lab_scaling
from renderlab.lab.pipeline_settings import gallery_url
from renderlab.pipeline.depot_songs import DEFAULT_SONG
from renderlab.workstation import demo, run_outputs
from tests.rehearsal import runs
from tests.rehearsal.conftest import Rehearsal

pytestmark = [pytest.mark.lab, pytest.mark.slow, pytest.mark.timeout(3 * 3600)]

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
BOTH, ONE = "both-nodes", "one-node"


def _checked(r: Rehearsal, run: runs.Run) -> None:
    assert run.rc == 0, f"the run failed: {run_outputs.failure(r.share, run.folder)}"
    # The outputs on the share folder every lab host binds, checked as `make demo` checks its own.
    assert run_outputs.problems(r.share, run.folder) == []
    # The run's page, served by the cluster's docs site.
    with urllib.request.urlopen(f"{gallery_url(r.config)}runs/{run.folder}/", timeout=30) as page:
        assert page.status == 200 and run.folder in page.read().decode()


def test_a_render_runs_through_the_lab_on_both_nodes(rehearsal: Rehearsal):
    r = rehearsal
    run = runs.recorded(r, CONF, BOTH)
    _checked(r, run)
    # The chunks ran on both nodes; the figures for the issue note, printed from the same records.
    chunks = lab_scaling.chunks(run.records)
    nodes = {*r.config.hosts_by_role("control_plane"), *r.config.hosts_by_role("worker")}
    assert {c.node for c in chunks} == nodes
    print(json.dumps({"per_node": lab_scaling.per_node(chunks), "overhead_share": lab_scaling.overhead_share(chunks),
                      "render_wall_s": lab_scaling.wall_seconds(chunks)}, indent=1))  # fmt: skip


def test_the_same_render_on_one_node(rehearsal: Rehearsal):
    """The worker cordoned (no new pod lands there), the same song, frames and chunks: every chunk on the
    control-plane node. The side-by-side figures come from benchmarks/lab_scaling.py over both runs' records."""
    r = rehearsal
    both = r.records / f"{BOTH}.json"
    if not both.is_file():
        pytest.fail(f"no {both}: the both-nodes run (the test before this one) did not record", pytrace=False)
    (worker,) = r.config.hosts_by_role("worker")
    r.k("cordon", worker)
    try:
        run = runs.recorded(r, CONF, ONE)
    finally:
        r.k("uncordon", worker)
    _checked(r, run)
    (control_plane,) = r.config.hosts_by_role("control_plane")
    assert {c.node for c in lab_scaling.chunks(run.records)} == {control_plane}
    print(lab_scaling.report(lab_scaling.compare(run.records, json.loads(both.read_text()))))


def test_pod_start_overhead_at_the_1080p60_preset(rehearsal: Rehearsal):
    """The preset the overhead target names, at its full 1920x1080, with few samples and short chunks (4 frames)
    so that it fits a rehearsal: a short chunk is the hard case for the overhead's share (the start costs the
    same, the chunk is shorter than any a real 1080p60 render at its 128 samples would have)."""
    r = rehearsal
    conf = {**CONF, "preset": "1080p60", "frames": "1-8", "frames_per_chunk": 4, "samples": 4,
            "resolution_percentage": 100}  # fmt: skip
    run = runs.recorded(r, conf, "overhead-1080p60")
    _checked(r, run)
    chunks = lab_scaling.chunks(run.records)
    print(f"1080p60 (1920x1080, 4 samples, 4-frame chunks): pod start overhead "
          f"{lab_scaling.overhead_share(chunks):.1%} of chunk time; chunks "
          + ", ".join(f"{c.node} {c.seconds:.0f} s (start {c.start_overhead:.1f} s)" for c in chunks))  # fmt: skip
