"""The local backend: the Job's command runs on this machine with the share mapped to a local folder.

The working directory is the share root (as in a pod, where it is the PVC mount), `python` is this
interpreter, output streams line by line into the task log, and a slot lock bounds how many Jobs run at
once across every Airflow task process on the machine.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

from renderlab.base import process_group
from renderlab.pipeline.jobspec import JobFailed, JobResult, JobSpec, parse_result_line
from renderlab.pipeline.settings import Settings

_KEEP_LINES = 200
# What a container image brings on its own (search path, home, locale, temp dir, which GPU): the only
# variables of the worker a local Job inherits. Everything else, a password included, stays out unless
# the spec names it (env, or a Secret reference), as in a pod.
_INHERITED = ("PATH", "HOME", "LANG", "LANGUAGE", "TZ", "TMPDIR", "CUDA_VISIBLE_DEVICES")
_INHERITED_PREFIXES = ("LC_",)


class ProcessBackend:
    def __init__(self, settings: Settings):
        self.settings = settings
        self.share = Path(settings.share_root)
        self.slots = settings.local_slots or os.cpu_count() or 1

    @contextlib.contextmanager
    def _slot(self, log: logging.Logger) -> Iterator[int]:
        """Take one of N file locks under the share; blocks while all are held (released if we die)."""
        lock_dir = self.share / ".renderlab" / "slots"
        lock_dir.mkdir(parents=True, exist_ok=True)
        waited = False
        while True:
            for i in range(self.slots):
                fh = open(lock_dir / f"slot-{i}.lock", "w")  # noqa: SIM115 - held for the Job's lifetime
                try:
                    fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:
                    fh.close()
                    continue
                try:
                    yield i
                finally:
                    fcntl.flock(fh, fcntl.LOCK_UN)
                    fh.close()
                return
            if not waited:
                log.info("all %d local job slots are busy; waiting for one", self.slots)
                waited = True
            time.sleep(0.5)

    def _argv(self, spec: JobSpec) -> list[str]:
        argv = list(spec.command)
        if argv[0] in ("python", "python3"):
            argv[0] = sys.executable
        return argv

    def _env(self, spec: JobSpec) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if k in _INHERITED or k.startswith(_INHERITED_PREFIXES)}
        env["RENDERLAB_SHARE"] = str(self.share)  # as the k8s backend sets it (the share mount)
        env.update(spec.env)
        repo = str(Path(__file__).resolve().parents[3])
        # The image's own import path: this repository, after any the settings put first.
        paths = [*self.settings.python_path, repo, os.environ.get("PYTHONPATH", "")]
        env["PYTHONPATH"] = os.pathsep.join(p for p in paths if p)
        env["PYTHONUNBUFFERED"] = "1"
        missing = []
        for ref in spec.secrets:
            # Locally a Secret reference is satisfied by the same variable in the worker's environment.
            if ref.env not in os.environ:
                missing.append(f"{ref.env} (Secret {ref.secret}/{ref.key})")
            else:
                env[ref.env] = os.environ[ref.env]
        if missing:
            raise JobFailed(
                f"job {spec.name}: the local backend needs these secrets in its environment: "
                f"{', '.join(missing)}; export them before starting Airflow"
            )
        return env

    def run(self, spec: JobSpec, log: logging.Logger, context: dict | None = None) -> JobResult:
        self.share.mkdir(parents=True, exist_ok=True)
        env = self._env(spec)
        argv = self._argv(spec)
        with self._slot(log) as slot:
            log.info("job %s (local slot %d): %s", spec.name, slot, " ".join(spec.command))
            start = time.monotonic()
            lines: list[str] = []
            proc = subprocess.Popen(
                argv,
                cwd=self.share,
                env=env,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
                bufsize=1,
                start_new_session=True,  # its own process group: a kill takes Blender's children too
            )
            timed_out = threading.Event()
            watchdog = None
            if spec.timeout_s:
                # A Job that hangs without printing must still be stopped at its deadline.
                def _expire() -> None:
                    timed_out.set()
                    _kill_group(proc, log, spec.name)

                watchdog = threading.Timer(spec.timeout_s, _expire)
                watchdog.daemon = True
                watchdog.start()
            try:
                assert proc.stdout is not None
                for raw in proc.stdout:
                    line = raw.rstrip("\n")
                    log.info("[%s] %s", spec.name, line)
                    lines.append(line)
                    del lines[:-_KEEP_LINES]
                code = proc.wait()
            finally:
                if watchdog is not None:
                    watchdog.cancel()
                if proc.poll() is None:
                    _kill_group(proc, log, spec.name)
            if timed_out.is_set():
                raise JobFailed(f"job {spec.name}: ran past its timeout of {spec.timeout_s}s and was stopped")
            seconds = time.monotonic() - start
        if code != 0:
            tail = "\n".join(lines[-10:])
            raise JobFailed(f"job {spec.name}: exited with status {code}; last output:\n{tail}")
        result = parse_result_line(spec.name, lines)
        log.info("job %s finished in %.1fs", spec.name, seconds)
        return JobResult(name=spec.name, exit_code=code, result=result, seconds=round(seconds, 3))


def _kill_group(proc: subprocess.Popen, log: logging.Logger, name: str) -> None:
    log.warning("job %s: stopping its process group", name)
    process_group.stop(proc)
