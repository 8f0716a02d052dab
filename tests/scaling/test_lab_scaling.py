"""benchmarks/lab_scaling.py's arithmetic on records shaped as the rehearsal saves them (kubectl's Job and pod
JSON, `kubectl logs --timestamps`): tests/fixtures/rehearsal, a one-node and a two-node run of four chunks."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest

from benchmarks import lab_scaling

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "rehearsal"


def _records(name: str) -> dict:
    return json.loads((FIXTURES / f"{name}.json").read_text())


def test_the_ratios_of_a_one_node_and_a_two_node_run():
    result = lab_scaling.compare(_records("one-node"), _records("both-nodes"))
    # Render wall time: first chunk Job created -> last chunk Job complete.
    assert (result["one_node_s"], result["both_nodes_s"]) == (400.0, 210.0)
    assert result["ratio"] == pytest.approx(210 / 400)
    # Per node: a chunk queued behind another (Pending until its pod was scheduled) is timed from then.
    assert result["per_node"] == {
        "control-plane": {"chunks": 2, "mean_s": pytest.approx((110 + 100) / 2)},
        "worker": {"chunks": 2, "mean_s": pytest.approx((100 + 100) / 2)},
    }
    # Overhead: chunk start -> Blender's first rendered frame (its line's time less its seconds): 4, 6, 4, 6 s.
    assert result["overhead_share"] == pytest.approx(20 / 410, abs=1e-4)


def test_the_retried_chunk_counts_its_succeeded_pod_and_its_first_rendered_frame():
    (chunk,) = [c for c in lab_scaling.chunks(_records("both-nodes")) if c.job == "render-main-9-12"]
    # Its first pod (deleted mid-chunk, Failed, on the other node) is not the one that rendered it, and the
    # retry's "already done, skipped" lines are not Blender starting a frame.
    assert chunk.node == "worker"
    assert chunk.start_overhead == pytest.approx(4, abs=1e-3) and chunk.seconds == 100
    assert {c.job for c in lab_scaling.chunks(_records("both-nodes"))} == {
        "render-main-1-4",
        "render-main-5-8",
        "render-main-9-12",
        "render-main-13-16",
    }  # fmt: skip (the build Job is no chunk)


def test_kubelet_timestamps_keep_microseconds():
    t = lab_scaling.timestamp("2026-12-06T16:00:04.000000123Z")
    assert (t.second, t.microsecond, t.utcoffset().total_seconds()) == (4, 0, 0)
    assert lab_scaling.timestamp("2026-12-06T16:00:04.5+01:00").microsecond == 500000
    with pytest.raises(lab_scaling.RecordError, match="not an RFC 3339 time"):
        lab_scaling.timestamp("yesterday")


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        (lambda r: r["jobs"]["items"][1]["status"].pop("completionTime"), "render Job render-main-1-4 never completed"),
        (lambda r: r["logs"].__setitem__("render-main-1-4-p1", "nothing\n"), "pod render-main-1-4-p1's log has no rendered-frame line"),
        (lambda r: r["pods"].__setitem__("items", [p for p in r["pods"]["items"] if p["metadata"]["name"] != "render-main-1-4-p1"]), "render Job render-main-1-4 has 0 succeeded pods"),
        (lambda r: r["jobs"].__setitem__("items", r["jobs"]["items"][:1]), "no render Job"),
    ],
)  # fmt: skip
def test_records_of_an_unfinished_or_partial_run_are_refused(damage, message):
    records = copy.deepcopy(_records("both-nodes"))
    damage(records)
    with pytest.raises(lab_scaling.RecordError, match=message):
        lab_scaling.chunks(records)


def test_a_one_node_run_that_used_both_nodes_is_refused():
    with pytest.raises(
        lab_scaling.RecordError, match=r"ran on \['control-plane', 'worker'\], not on one node"
    ):
        lab_scaling.compare(_records("both-nodes"), _records("both-nodes"))


def test_the_script_prints_the_ratios_or_one_error(tmp_path, capsys):
    args = [str(FIXTURES / "one-node.json"), str(FIXTURES / "both-nodes.json")]
    assert lab_scaling.main(args) == 0
    out = capsys.readouterr().out
    assert "ratio 0.53 (target <= 0.55: ok)" in out and "pod start overhead 4.9% of chunk time" in out
    assert "worker                 2 chunks   mean    100.0 s" in out
    (tmp_path / "bad.json").write_text("{}")
    assert lab_scaling.main([args[0], str(tmp_path / "bad.json")]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "the records lack the key 'pods'" in err
