"""What the marbles' motion blur costs to render, side by side in one run (a figure, not a test).

    .venv/bin/python benchmarks/motion_blur_bench.py [--midi FILE] [--preset demo] [--samples 8]
        [--resolution-percentage 25] [--repeats 2] [--position 0.5]

Builds the song (default: the depot's frere_groove) with blender_scripts.build, opens its main scene and
renders the same frame (at `--position` of the scene's range) with the build's motion blur on the marbles
and with it switched off, alternating, `--repeats` times each; prints the seconds of each and the ratio
(blur / no blur) as one JSON line. Keep it small on a shared machine: a low resolution and few samples
show the ratio; the absolute seconds are this machine's.
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


def _build(midi: Path, out: Path) -> Path:
    proc = subprocess.run(
        [sys.executable, "-m", "blender_scripts.build", "--midi", str(midi), "--out", str(out)],
        cwd=ROOT, capture_output=True, text=True, check=False,
    )  # fmt: skip
    if proc.returncode:
        sys.exit(f"motion_blur_bench: the build failed: {proc.stderr.strip()[-400:]}")
    return Path(json.loads(proc.stdout.strip().splitlines()[-1])["blend"])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--midi", type=Path, default=ROOT / "depot" / "songs" / "frere_groove" / "song.mid")
    ap.add_argument("--preset", default="demo")
    ap.add_argument("--samples", type=int, default=8)
    ap.add_argument("--resolution-percentage", type=int, default=25)
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--position", type=float, default=0.5)
    a = ap.parse_args()

    import bpy

    from blender_scripts import render

    with tempfile.TemporaryDirectory(prefix="blur-bench-") as tmp:
        blend = _build(a.midi, Path(tmp) / "scene")
        bpy.ops.wm.open_mainfile(filepath=str(blend), load_ui=False)
        scene = bpy.context.scene
        size = render.apply_settings(scene, a.preset, a.samples, a.resolution_percentage)
        scene.frame_set(scene.frame_start + round(a.position * (scene.frame_end - scene.frame_start)))
        scene.render.filepath = str(Path(tmp) / "frame.png")
        seconds: dict[bool, list[float]] = {True: [], False: []}
        for _ in range(a.repeats):
            for blur in (True, False):  # alternating: a machine busy with something else hits both
                scene.render.use_motion_blur = blur
                start = time.perf_counter()
                bpy.ops.render.render(write_still=True)
                seconds[blur].append(time.perf_counter() - start)
    on, off = statistics.median(seconds[True]), statistics.median(seconds[False])
    print(json.dumps({
        "song": a.midi.name if a.midi.name != "song.mid" else a.midi.parent.name, "preset": a.preset,
        "samples": a.samples, "size": list(size), "frame": scene.frame_current,
        "blur_s": round(on, 3), "no_blur_s": round(off, 3), "ratio": round(on / off, 3),
        "runs": {"blur": [round(s, 3) for s in seconds[True]], "no_blur": [round(s, 3) for s in seconds[False]]},
    }))  # fmt: skip


if __name__ == "__main__":
    main()
