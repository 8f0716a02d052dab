"""The Pulumi Kubernetes provider for the checks that run it (`make k8s-provider`).

On a workstation such a check skips while the provider is not built, and names the command. Where CI requires
every lane (RENDERLAB_REQUIRE_LANES=1) it builds the provider, or waits for the build .ci/run started beside the
suite: the script's lock makes a second run wait for the first, which then finds the stamp and builds
nothing. Those checks are marked `k8s_provider`, and tests/conftest.py orders them after the lab lane, so that
build has the whole suite's time to finish on the CPU the suite leaves idle.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "scripts" / "build-k8s-provider.sh"
BUILD_TIMEOUT_S = 3600


def path() -> Path:
    out = subprocess.run([str(SCRIPT), "--print-path"], capture_output=True, text=True, check=True)
    return Path(out.stdout.strip())


def ensure() -> Path:
    """The provider binary; skips (workstation) or builds / waits for the build (CI) when it is not there."""
    binary = path()
    if os.environ.get("RENDERLAB_REQUIRE_LANES") != "1":
        if not os.access(binary, os.X_OK):
            pytest.skip(f"no Pulumi Kubernetes provider at {binary}: run `make k8s-provider`")
        return binary
    proc = subprocess.run([str(SCRIPT)], capture_output=True, text=True, timeout=BUILD_TIMEOUT_S, check=False)
    if proc.returncode != 0 or not os.access(binary, os.X_OK):
        pytest.fail(
            f"`make k8s-provider` failed (exit {proc.returncode}): {(proc.stdout + proc.stderr)[-3000:]}"
        )
    return binary
