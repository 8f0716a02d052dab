"""Render cost of two builds of one song, side by side in one run (a figure, not a test).

    .venv/bin/python benchmarks/scene_cost_bench.py --blend BEFORE.blend --blend AFTER.blend
        [--preset 1080p60] [--samples 16] [--resolution-percentage 25] [--positions 0.25,0.5,0.75] [--repeats 1]

Renders the same song positions (fractions of each scene's frame range) of both .blend files at the same
preset, alternating A, B, A, B so machine load falls on both alike, with blender_scripts.render in a fresh
process each; prints each render's seconds and, last, one JSON line with the mean seconds per frame of each
and the ratio B / A. Use it for a layout or look change: build the song on both trees, compare here. Keep it
small on a shared machine (the ratio is the figure; the seconds are this machine's).
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # run as a script from anywhere


def _frame_range(blend: Path) -> tuple[int, int]:
    code = (
        "import bpy, json, sys; bpy.ops.wm.open_mainfile(filepath=sys.argv[-1]); s = bpy.context.scene; "
        "print(json.dumps([s.frame_start, s.frame_end]))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code, str(blend)], capture_output=True, text=True, check=True, cwd=ROOT
    )
    first, last = json.loads(out.stdout.strip().splitlines()[-1])
    return first, last


def _render(blend: Path, frame: int, out: Path, ns: argparse.Namespace) -> float:
    cmd = [
        sys.executable, "-m", "blender_scripts.render", "--blend", str(blend), "--frames", str(frame),
        "--out", str(out), "--preset", ns.preset, "--samples", str(ns.samples),
        "--resolution-percentage", str(ns.resolution_percentage), "--device", "cpu",
    ]  # fmt: skip
    started = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False, cwd=ROOT)
    if proc.returncode:
        sys.exit(f"scene_cost_bench: rendering {blend} frame {frame} failed: {proc.stderr.strip()[-400:]}")
    return time.perf_counter() - started


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--blend", type=Path, action="append", required=True, help="twice: before, then after")
    ap.add_argument("--preset", default="1080p60")
    ap.add_argument("--samples", type=int, default=16)
    ap.add_argument("--resolution-percentage", type=int, default=25)
    ap.add_argument("--positions", default="0.25,0.5,0.75")
    ap.add_argument("--repeats", type=int, default=1)
    ns = ap.parse_args()
    if len(ns.blend) != 2:
        ap.error("give --blend twice: the build before the change, then the one after")
    positions = [float(p) for p in ns.positions.split(",")]
    frames = []
    for blend in ns.blend:
        first, last = _frame_range(blend)
        frames.append([first + round(p * (last - first)) for p in positions])
    seconds: list[list[float]] = [[], []]
    with tempfile.TemporaryDirectory(prefix="scene-cost-") as tmp:
        for rep in range(ns.repeats):
            for k in range(len(positions)):
                for side in (0, 1):
                    out = Path(tmp) / f"{side}-{rep}-{k}"  # a fresh folder: never a skipped frame
                    s = _render(ns.blend[side], frames[side][k], out, ns)
                    seconds[side].append(s)
                    print(
                        f"{'AB'[side]} {ns.blend[side].name} frame {frames[side][k]}: {s:.1f} s", flush=True
                    )
    a, b = (statistics.mean(s) for s in seconds)
    print(
        json.dumps({
            "preset": ns.preset, "samples": ns.samples, "resolution_percentage": ns.resolution_percentage,
            "before": str(ns.blend[0]), "after": str(ns.blend[1]),
            "before_s_per_frame": round(a, 2), "after_s_per_frame": round(b, 2), "ratio": round(b / a, 3),
        })
    )  # fmt: skip


if __name__ == "__main__":
    main()
