"""Pipeline overhead: the render DAG end to end (real Airflow, local backend) vs bare Blender doing the same
work (build the scene, render the same frames with the same settings), side by side in one run.

    python benchmarks/pipeline_bench.py [--song frere_groove] [--frames 41-160] [--samples 8] [--res 50]

The DAG's time is `airflow dags test` from start to exit (fetch, build, render chunks, assemble, validate,
notify, Airflow's own start-up); the Airflow database is migrated beforehand and not counted. Target:
ratio <= 1.25 on a render of >= 60 s.
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from renderlab.workstation import demo as local_demo  # noqa: E402


def bare(a: argparse.Namespace, work: Path) -> tuple[float, float]:
    """Blender alone: the build and render entrypoints run directly, one process each."""
    env = {**local_demo.airflow_env(work, work, work), "PYTHONPATH": str(REPO)}
    project = REPO / "depot" / "songs" / a.song
    started = time.monotonic()
    cmd = [
        sys.executable,
        "-m",
        "renderlab.jobs.build_step",
        "--project",
        str(project),
        "--out",
        str(work / "scene"),
    ]
    out = subprocess.run([*cmd, "--fps", str(a.fps)], env=env, capture_output=True, text=True, check=True)
    built = json.loads(out.stdout.strip().splitlines()[-1])
    render_started = time.monotonic()
    subprocess.run(
        [sys.executable, "-m", "blender_scripts.render", "--blend", built["blend"], "--frames", a.frames,
         "--out", str(work / "frames"), "--preset", "demo", "--samples", str(a.samples),
         "--resolution-percentage", str(a.res)],
        env=env, capture_output=True, text=True, check=True,
    )  # fmt: skip
    done = time.monotonic()
    return done - started, done - render_started


def dag(a: argparse.Namespace, work: Path) -> tuple[float, float]:
    home, share = work / "airflow", work / "share"
    home.mkdir(parents=True)
    env = local_demo.airflow_env(home, share, REPO / "depot" / "songs", {"fps": a.fps})
    airflow = str(Path(sys.executable).with_name("airflow"))
    log = work / "airflow.log"
    if local_demo._run([airflow, "db", "migrate"], env, log, echo=False) != 0:
        raise SystemExit(f"bench: airflow db migrate failed; see {log}")
    conf = {"song": a.song, "frames": a.frames, "samples": a.samples, "resolution_percentage": a.res,
            "frames_per_chunk": a.chunk, "preset": "demo", "notify": "none"}  # fmt: skip
    started = time.monotonic()
    code = local_demo._run(
        [airflow, "dags", "test", "render", "--conf", json.dumps(conf)], env, log, echo=False
    )
    elapsed = time.monotonic() - started
    ok = list(share.glob("runs/*/report/notification-success.json"))
    if code != 0 or not ok:
        raise SystemExit(f"bench: the DAG run failed (exit {code}); see {log}")
    # Time inside the Jobs (the backend logs each one's duration); the rest is Airflow and the tasks.
    in_jobs = sum(float(m) for m in re.findall(r"job \S+ finished in ([0-9.]+)s", log.read_text()))
    return elapsed, in_jobs


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--song", default="frere_groove")
    ap.add_argument("--frames", default="41-160")
    ap.add_argument("--samples", type=int, default=8)
    ap.add_argument("--res", type=int, default=50, help="resolution percentage of the demo preset")
    ap.add_argument("--fps", type=int, default=30)
    ap.add_argument("--chunk", type=int, default=60, help="frames per chunk in the DAG")
    a = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="pipeline-bench-"))
    try:
        print(f"bench: {a.song} frames {a.frames}, demo preset at {a.res}%, {a.samples} samples, {a.fps} fps")
        bare_s, render_s = bare(a, work / "bare")
        print(f"bench: bare Blender   {bare_s:7.1f} s  (of which rendering {render_s:.1f} s)")
        dag_s, in_jobs = dag(a, work / "dag")
        print(
            f"bench: DAG end to end {dag_s:7.1f} s  (fetch, build, {a.chunk}-frame chunks, assemble, validate)"
        )
        print(
            f"bench:   of which in Jobs {in_jobs:.1f} s, Airflow start-up and task overhead {dag_s - in_jobs:.1f} s"
        )
        ratio = dag_s / bare_s
        verdict = "ok" if ratio <= 1.25 else "ABOVE TARGET"
        print(f"bench: ratio DAG/bare = {ratio:.3f} (target <= 1.25: {verdict}; bare render >= 60 s: "
              f"{'yes' if render_s >= 60 else 'no, raise --frames'})")  # fmt: skip
        return 0 if ratio <= 1.25 else 1
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
