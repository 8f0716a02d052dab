"""The suite-wide rule in tests/conftest.py: with RENDERLAB_REQUIRE_LANES=1 a buildable lane's skip fails."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent

LANE_TESTS = """
import pytest

def test_engine_lane():
    pytest.skip("the Pulumi engine is not built: run `make tools`")

def test_cluster_layer_lane():
    pytest.skip("no Pulumi Kubernetes provider at /x: run `make k8s-provider`")

def test_real_midi_lane():
    pytest.skip("the real MIDI files could not be fetched (offline): run `make real-midi`")

def test_p4d_lane():
    pytest.skip("no p4d on PATH")  # cannot be had here: stays a skip

def test_runs():
    assert True
"""


def run_suite(tmp_path: Path, require: bool) -> subprocess.CompletedProcess[str]:
    shutil.copy(HERE / "conftest.py", tmp_path / "conftest.py")
    (tmp_path / "test_lanes.py").write_text(LANE_TESTS)
    env = {k: v for k, v in os.environ.items() if k != "RENDERLAB_REQUIRE_LANES"}
    if require:
        env["RENDERLAB_REQUIRE_LANES"] = "1"
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-o", "addopts=", str(tmp_path)],
        check=False,
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_a_buildable_lane_skips_on_a_workstation(tmp_path):
    proc = run_suite(tmp_path, require=False)
    assert proc.returncode == 0, proc.stdout
    assert "1 passed, 4 skipped" in proc.stdout


def test_a_buildable_lane_fails_when_ci_requires_it(tmp_path):
    proc = run_suite(tmp_path, require=True)
    assert proc.returncode == 1, proc.stdout
    assert "3 failed, 1 passed, 1 skipped" in proc.stdout
    assert "RENDERLAB_REQUIRE_LANES=1 but the lane skipped" in proc.stdout
    assert "make tools" in proc.stdout
    assert "make k8s-provider" in proc.stdout
    assert "make real-midi" in proc.stdout
