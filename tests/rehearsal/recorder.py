"""The run's records for benchmarks/lab_scaling.py, taken while the run goes on: the Kubernetes backend deletes
each Job once it has read its result (renderlab/pipeline/backends/kubernetes.py), so nothing is left to list
afterwards. Two API watches (Jobs, pods: every change is streamed, none is missed between polls) and one
`kubectl logs -f --timestamps` per pod, started once its container has started: asked earlier, kubectl answers
"waiting to start" and exits at once (the first rehearsal's records had every log empty for that reason). A
follower that fails is started again at the pod's next change, up to FOLLOW_TRIES times; what kubectl said on
stderr is kept in the records beside the log.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

FOLLOW_TRIES = 5


def container_started(pod: dict) -> bool:
    """The pod's container runs or has run: only then has it a log to follow."""
    for status in pod.get("status", {}).get("containerStatuses") or []:
        state = status.get("state") or {}
        if "running" in state or ("terminated" in state and (state["terminated"] or {}).get("startedAt")):
            return True
    return False


@dataclass
class Follower:
    proc: subprocess.Popen
    out: Path
    err: Path
    tries: int

    def failed(self) -> bool:
        return self.proc.poll() not in (None, 0)


class Documents:
    """The JSON documents kubectl's watch writes one after another (pretty-printed, not one per line), fed as
    the lines arrive: each complete document once."""

    def __init__(self) -> None:
        self.buffer = ""
        self.decoder = json.JSONDecoder()

    def feed(self, text: str) -> list[dict[str, Any]]:
        self.buffer += text
        out = []
        while True:
            self.buffer = self.buffer.lstrip()
            try:
                obj, end = self.decoder.raw_decode(self.buffer)
            except json.JSONDecodeError:
                return out  # empty, or the next document is not complete yet
            out.append(obj)
            self.buffer = self.buffer[end:]


class Recorder:
    def __init__(self, kubectl: list[str], namespace: str, selector: str):
        self.kubectl, self.ns, self.selector = kubectl, namespace, selector
        self.latest: dict[str, dict[str, dict]] = {"jobs": {}, "pods": {}}
        self.followers: dict[str, Follower] = {}
        self.folder = Path(tempfile.mkdtemp(prefix="rehearsal-logs-"))
        self.watches: list[tuple[str, subprocess.Popen, threading.Thread]] = []
        self.lock = threading.Lock()

    def __enter__(self) -> Recorder:
        for kind in ("jobs", "pods"):
            proc = subprocess.Popen(
                [*self.kubectl, "-n", self.ns, "get", kind, "-l", self.selector, "--watch", "-o", "json",
                 "--output-watch-events"],
                stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
            )  # fmt: skip
            thread = threading.Thread(target=self._read, args=(kind, proc), daemon=True)
            thread.start()
            self.watches.append((kind, proc, thread))
        return self

    def _read(self, kind: str, proc: subprocess.Popen) -> None:
        documents = Documents()
        for line in proc.stdout:
            for event in documents.feed(line):
                self._seen(kind, event.get("object") or {})

    def _seen(self, kind: str, obj: dict) -> None:
        name = obj.get("metadata", {}).get("name")
        if not name:
            return
        with self.lock:
            self.latest[kind][name] = obj  # a DELETED event carries the object's last state too
            if kind == "pods" and container_started(obj):
                self._follow(name)

    def _follow(self, pod: str) -> None:
        """Start (or start again, after a failure) the pod's log follower; the caller holds the lock."""
        old = self.followers.get(pod)
        if old is not None and (not old.failed() or old.tries >= FOLLOW_TRIES):
            return
        out, err = self.folder / f"{pod}.log", self.folder / f"{pod}.err"
        with out.open("wb") as o, err.open("wb") as e:  # the child keeps its own copies of the descriptors
            proc = subprocess.Popen(
                [*self.kubectl, "-n", self.ns, "logs", "-f", "--timestamps", f"pod/{pod}"], stdout=o, stderr=e
            )
        self.followers[pod] = Follower(proc, out, err, (old.tries if old else 0) + 1)

    def log_so_far(self, pod: str) -> str:
        """What the pod's log follower has written yet ("" before it started)."""
        with self.lock:
            f = self.followers.get(pod)
        return f.out.read_text(encoding="utf-8", errors="replace") if f else ""

    def pods(self) -> dict[str, dict]:
        """The latest state of every pod seen so far."""
        with self.lock:
            return dict(self.latest["pods"])

    def __exit__(self, *exc) -> None:
        for _, proc, _ in self.watches:
            proc.terminate()
        for _, proc, thread in self.watches:
            proc.wait(timeout=30)
            thread.join(timeout=30)

    def records(self) -> dict[str, Any]:
        """As benchmarks/lab_scaling.py reads them; each log is read to its end (its pod has finished)."""
        logs, errors = {}, {}
        with self.lock:
            followers = dict(self.followers)
        for name, f in followers.items():
            try:
                f.proc.wait(timeout=120)
            except subprocess.TimeoutExpired:
                f.proc.kill()
                f.proc.wait()
            logs[name] = f.out.read_text(encoding="utf-8", errors="replace")
            err = f.err.read_text(encoding="utf-8", errors="replace").strip()
            if err or f.proc.returncode:
                errors[name] = f"exit {f.proc.returncode} after {f.tries} tries: {err}"
        with self.lock:
            return {
                "jobs": {"kind": "List", "items": list(self.latest["jobs"].values())},
                "pods": {"kind": "List", "items": list(self.latest["pods"].values())},
                "logs": logs,
                "log_errors": errors,
            }

    def save(self, path: Path) -> dict[str, Any]:
        records = self.records()
        shutil.rmtree(self.folder, ignore_errors=True)
        path.write_text(json.dumps(records, indent=1) + "\n", encoding="utf-8")
        return records
