"""Run a command as PID 1 of its own PID namespace, as a container runtime starts an entrypoint, and stop it.

PID 1 of a namespace gets no signal it has no handler for (the kernel drops it), so these checks prove a handler.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
from pathlib import Path


def start(cmd: list[str], **popen) -> subprocess.Popen:
    """Start `cmd` under `unshare --pid --fork` (text mode): the command is PID 1 inside, a child of proc outside."""
    if (
        shutil.which("unshare") is None
        or subprocess.run(["unshare", "--pid", "--fork", "true"], capture_output=True, check=False).returncode
    ):
        raise AssertionError(
            "unshare --pid cannot run here (util-linux, root): the check needs a PID namespace"
        )
    return subprocess.Popen(["unshare", "--pid", "--fork", *cmd], text=True, **popen)


def terminate(proc: subprocess.Popen, timeout: float, what: str) -> tuple[str, str]:
    """SIGTERM to the namespace's PID 1 (unshare's one child), then its output; fail naming `what` if it lives on."""
    (child,) = Path(f"/proc/{proc.pid}/task/{proc.pid}/children").read_text().split()
    os.kill(int(child), signal.SIGTERM)
    try:
        return proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        raise AssertionError(f"{what} as PID 1 did not stop within {timeout:g} s of SIGTERM") from None
