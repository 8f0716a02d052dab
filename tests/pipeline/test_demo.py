"""`python -m renderlab.workstation.demo` (what `make demo` runs): real Airflow from its own home, the DAG with the
local backend, the run folder printed last, nothing left running. Jobs use the contract stand-in here
(fast); the real Blender path is covered by test_blender_e2e.py and by `make demo` itself."""

from __future__ import annotations

import json
import subprocess
import sys

import psutil
import pytest

from tests.pipeline.conftest import REPO, STANDIN, base_env

pytestmark = [pytest.mark.slow, pytest.mark.airflow]


def test_demo_prints_the_run_folder_and_leaves_no_process(tmp_path, depot):
    env = base_env(tmp_path / "unused")
    cmd = [
        sys.executable,
        "-m",
        "renderlab.workstation.demo",
        "--depot",
        str(depot),
        "--out",
        str(tmp_path / "out"),
        "--airflow-home",
        str(tmp_path / "airflow"),
        "--python-path",
        str(STANDIN),
        "--frames",
        "1-12",
        "--fps",
        "24",
        "--frames-per-chunk",
        "6",
        "--no-look",
    ]  # fmt: skip (the stand-in cannot render a look)
    before = {p.pid for p in psutil.process_iter()}
    proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=600, check=False)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    run_dir = proc.stdout.strip().splitlines()[-1]
    assert run_dir.startswith(str(tmp_path / "out" / "runs"))
    # It says where the run's gallery page is (published by the DAG's gallery Job), and the page is there.
    page = tmp_path / "out" / "gallery" / "runs" / run_dir.rsplit("/", 1)[-1] / "index.html"
    assert f"demo: gallery page {page}" in proc.stdout and page.is_file()
    probe = subprocess.run(
        ["ffprobe", "-v", "error", "-show_streams", "-of", "json", f"{run_dir}/video/tiny_main.mp4"],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    durations = {s["codec_type"]: float(s["duration"]) for s in json.loads(probe.stdout)["streams"]}
    assert durations == pytest.approx({"video": 0.5, "audio": 0.5}, abs=0.05)  # 12 frames at the demo's fps
    assert not [p for p in psutil.process_iter(["pid", "cwd", "cmdline"]) if p.info["pid"] not in before
                and _ours(p.info, tmp_path)]  # fmt: skip


def _ours(info: dict, tmp_path) -> bool:
    """Started by this demo: Jobs run in its share, Airflow runs in the repo (other checkouts differ)."""
    cwd = info.get("cwd") or ""
    cmd = " ".join(info.get("cmdline") or [])
    return cwd.startswith(str(tmp_path)) or (cwd == str(REPO) and ("airflow" in cmd or "renderlab" in cmd))
