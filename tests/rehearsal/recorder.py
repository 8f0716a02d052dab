"""The run's records for benchmarks/lab_scaling.py, taken while the run goes on: the Kubernetes backend deletes
each Job once it has read its result (renderlab/pipeline/backends/kubernetes.py), so nothing is left to list
afterwards. Two API watches (Jobs, pods: every change is streamed, none is missed between polls) and one
`kubectl logs -f --timestamps` per pod, started when the pod is first seen.
"""

from __future__ import annotations

import json
import subprocess
import threading
from pathlib import Path
from typing import Any


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
        self.logs: dict[str, subprocess.Popen] = {}
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
            if kind == "pods" and name not in self.logs and obj.get("spec", {}).get("nodeName"):
                self.logs[name] = subprocess.Popen(
                    [*self.kubectl, "-n", self.ns, "logs", "-f", "--timestamps", "--pod-running-timeout=10m",
                     f"pod/{name}"],
                    stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
                )  # fmt: skip

    def __exit__(self, *exc) -> None:
        for _, proc, _ in self.watches:
            proc.terminate()
        for _, proc, thread in self.watches:
            proc.wait(timeout=30)
            thread.join(timeout=30)

    def records(self) -> dict[str, Any]:
        """As benchmarks/lab_scaling.py reads them; each log is read to its end (its pod has finished)."""
        logs = {}
        with self.lock:
            followers = dict(self.logs)
        for name, proc in followers.items():
            try:
                out, _ = proc.communicate(timeout=120)
            except subprocess.TimeoutExpired:
                proc.kill()
                out, _ = proc.communicate()
            logs[name] = out
        with self.lock:
            return {
                "jobs": {"kind": "List", "items": list(self.latest["jobs"].values())},
                "pods": {"kind": "List", "items": list(self.latest["pods"].values())},
                "logs": logs,
            }

    def save(self, path: Path) -> dict[str, Any]:
        records = self.records()
        path.write_text(json.dumps(records, indent=1) + "\n", encoding="utf-8")
        return records
