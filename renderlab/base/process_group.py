"""Child processes in their own process group, and stopping a whole group: signal it, give it a grace
period, then SIGKILL whatever of it is left (the leader may be gone while its children are not).

Every tool that starts a long-running child (the local Job backend, `make demo`, the docs server, the local
Airflow) starts it with `start_new_session=True` and stops it here.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess


def alive(pid: int) -> bool:
    """Whether a process with this pid exists (someone else's counts)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def signal_group(pgid: int, sig: int) -> None:
    """Send `sig` to a process group that may already be gone or not ours."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)


def stop(
    proc: subprocess.Popen, sig: int = signal.SIGTERM, grace: float = 10, descendants: bool = False
) -> None:
    """Stop `proc`'s process group (it was started with `start_new_session=True`) and reap `proc`.

    `sig` first (nginx stops gracefully on SIGQUIT), `grace` seconds for the group to go, then SIGKILL to the
    group. `descendants`: also the processes that left the group (a child that made its own session, as a Job
    under `airflow dags test` does), found with psutil before the first signal."""
    kids: list = []
    if descendants:
        import psutil  # only the workstation tools ask for it; the images do not have it

        with contextlib.suppress(psutil.NoSuchProcess):
            kids = psutil.Process(proc.pid).children(recursive=True)
    signal_group(proc.pid, sig)
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(timeout=grace)
    if kids:
        _, kids = psutil.wait_procs(kids, timeout=grace)
    signal_group(proc.pid, signal.SIGKILL)
    for kid in kids:
        with contextlib.suppress(psutil.NoSuchProcess):
            kid.kill()
    proc.wait()
