"""Scaling of the render chunks over the lab's Kubernetes nodes, from the records of rehearsal runs.

    python benchmarks/lab_scaling.py ONE_NODE.json BOTH_NODES.json

Each file is one run's records as `make lab-rehearsal` saves them (tests/rehearsal): the render Jobs and their
pods as the API returned them (`kubectl get jobs,pods -l renderlab/run=<run> -o json`) and each pod's log with
the kubelet's timestamps (`kubectl logs --timestamps`). Printed side by side, as ratios of one run:

- the run's render wall time (first render Job created -> last one complete), one node vs both; target: both
  nodes take at most 0.55x the time of one;
- per node: how many chunks it ran and their mean time (chunk start -> Job complete);
- pod start overhead: chunk start -> Blender starts its first frame (the first `render: frame N (i/n) S s`
  line's timestamp less its S seconds), as a share of the chunk's time; target under 10% at the 1080p60 preset.
  A chunk starts when its Job is created, or when its pod is scheduled if that is later: a Job that waits
  Pending for a free node is queueing, not pod start overhead.

Only the arithmetic lives here (tested on recorded-shaped data in tests/benchmarks); running the two renders
is the rehearsal's job.
"""

from __future__ import annotations

import json
import re
import statistics
import sys
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

CHUNK_LABEL = "renderlab/chunk"  # renderlab.pipeline.steps labels every render Job with it
JOB_NAME_LABELS = ("batch.kubernetes.io/job-name", "job-name")  # the Job controller labels its pods
# blender_scripts/render.py's progress line for a frame it rendered (not one it skipped as already done).
FRAME_LINE = re.compile(r"^(\S+) render: frame (\d+) \((\d+)/(\d+)\) ([0-9.]+) s on ")
TWO_NODE_TARGET = 0.55
OVERHEAD_TARGET = 0.10


class RecordError(ValueError):
    """The records are not what the rehearsal saves: one message naming the Job or pod."""


def timestamp(text: str) -> datetime:
    """An RFC 3339 time from the API or from `kubectl logs --timestamps` (nanoseconds cut to microseconds)."""
    m = re.fullmatch(r"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(?:\.(\d+))?(Z|[+-]\d\d:\d\d)", text)
    if not m:
        raise RecordError(f"{text!r} is not an RFC 3339 time")
    fraction = f".{(m[2] + '000000')[:6]}" if m[2] else ""
    return datetime.fromisoformat(m[1] + fraction + ("+00:00" if m[3] == "Z" else m[3]))


@dataclass(frozen=True)
class Chunk:
    job: str
    node: str
    created: datetime  # the Job
    started: datetime  # the later of the Job's creation and its pod's scheduling: a Job queued behind others
    completed: datetime  # (Pending, no free node) is not charged for the wait
    blender_started: datetime

    @property
    def seconds(self) -> float:
        return (self.completed - self.started).total_seconds()

    @property
    def start_overhead(self) -> float:
        return (self.blender_started - self.started).total_seconds()


def _scheduled(pod: dict) -> datetime | None:
    for cond in pod.get("status", {}).get("conditions") or []:
        if cond.get("type") == "PodScheduled" and cond.get("status") == "True":
            return timestamp(cond["lastTransitionTime"])
    return None


def first_frame_start(log: str) -> datetime | None:
    """When Blender began the first frame it rendered: that frame's line, less the seconds the line gives."""
    for line in log.splitlines():
        m = FRAME_LINE.match(line)
        if m:
            return timestamp(m[1]) - timedelta(seconds=float(m[5]))
    return None


def _job_of(pod: dict) -> str | None:
    labels = pod["metadata"].get("labels") or {}
    return next((labels[k] for k in JOB_NAME_LABELS if k in labels), None)


def chunks(records: dict[str, Any]) -> list[Chunk]:
    """The run's render chunks: each complete render Job with the node and the log of its succeeded pod."""
    pods: dict[str, list[dict]] = {}
    for pod in records["pods"]["items"]:
        pods.setdefault(_job_of(pod) or "", []).append(pod)
    out = []
    for job in records["jobs"]["items"]:
        meta = job["metadata"]
        if CHUNK_LABEL not in (meta.get("labels") or {}):
            continue  # fetch, build, assemble, ...: not a render chunk
        name = meta["name"]
        done = job.get("status", {}).get("completionTime")
        if not done:
            raise RecordError(f"render Job {name} never completed; the records are of an unfinished run")
        succeeded = [p for p in pods.get(name, []) if p.get("status", {}).get("phase") == "Succeeded"]
        if len(succeeded) != 1:
            raise RecordError(f"render Job {name} has {len(succeeded)} succeeded pods in the records, not 1")
        (pod,) = succeeded
        pod_name = pod["metadata"]["name"]
        started = first_frame_start(records["logs"].get(pod_name, ""))
        if started is None:
            said = (records.get("log_errors") or {}).get(pod_name)
            raise RecordError(
                f"pod {pod_name}'s log has no rendered-frame line; save it with `kubectl logs --timestamps`"
                + (f" (kubectl said: {said})" if said else "")
            )
        created = timestamp(meta["creationTimestamp"])
        scheduled = _scheduled(pod)
        start = max(created, scheduled) if scheduled else created
        out.append(Chunk(name, pod["spec"]["nodeName"], created, start, timestamp(done), started))
    if not out:
        raise RecordError(f"no render Job (label {CHUNK_LABEL}) in the records")
    return out


def wall_seconds(cs: list[Chunk]) -> float:
    """The render step's span: the first chunk's Job created -> the last chunk's Job complete."""
    return (max(c.completed for c in cs) - min(c.created for c in cs)).total_seconds()


def per_node(cs: list[Chunk]) -> dict[str, dict[str, float]]:
    nodes: dict[str, list[Chunk]] = {}
    for c in cs:
        nodes.setdefault(c.node, []).append(c)
    return {
        node: {"chunks": len(group), "mean_s": statistics.fmean(c.seconds for c in group)}
        for node, group in sorted(nodes.items())
    }


def overhead_share(cs: list[Chunk]) -> float:
    """Pod start overhead as a share of chunk time, over the whole run (sum over sum: long chunks weigh more)."""
    return sum(c.start_overhead for c in cs) / sum(c.seconds for c in cs)


def compare(one: dict[str, Any], both: dict[str, Any]) -> dict[str, Any]:
    a, b = chunks(one), chunks(both)
    if len(per_node(a)) != 1:
        raise RecordError(f"the one-node run's chunks ran on {sorted(per_node(a))}, not on one node")
    return {
        "one_node_s": wall_seconds(a),
        "both_nodes_s": wall_seconds(b),
        "ratio": wall_seconds(b) / wall_seconds(a),
        "per_node": per_node(b),
        "overhead_share": overhead_share(b),
    }


def report(result: dict[str, Any]) -> str:
    ok = "ok" if result["ratio"] <= TWO_NODE_TARGET else "OVER TARGET"
    lines = [
        f"render wall time   one node {result['one_node_s']:8.1f} s   both nodes {result['both_nodes_s']:8.1f} s"
        f"   ratio {result['ratio']:.2f} (target <= {TWO_NODE_TARGET}: {ok})",
    ]
    for node, n in result["per_node"].items():
        lines.append(f"  {node:<20} {n['chunks']:3d} chunks   mean {n['mean_s']:8.1f} s")
    share = result["overhead_share"]
    lines.append(
        f"pod start overhead {share:.1%} of chunk time "
        f"(target < {OVERHEAD_TARGET:.0%}: {'ok' if share < OVERHEAD_TARGET else 'OVER TARGET'})"
    )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 2:
        print("usage: python benchmarks/lab_scaling.py ONE_NODE.json BOTH_NODES.json", file=sys.stderr)
        return 2
    try:
        one, both = (json.loads(Path(p).read_text(encoding="utf-8")) for p in args)
        print(report(compare(one, both)))
    except KeyError as e:
        print(
            f"lab_scaling: the records lack the key {e}; use the files the rehearsal saves", file=sys.stderr
        )
        return 1
    except (OSError, json.JSONDecodeError, RecordError) as e:
        print(f"lab_scaling: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
