"""Look check: render a handful of frames at fixed song positions into one contact sheet.

    python -m blender_scripts.look --blend FILE --out SHEET.png [--positions 0.08,0.25,...]
        [--preset demo] [--samples 8] [--resolution-percentage 100] [--device auto|cpu|gpu]

Positions are fractions of the scene's frame range (the same song positions every time, so two builds
compare side by side). The last tile is the scene's least-visible moment, where the build's strike-visibility
measure (blender_scripts/visibility.py) found the most strikes off screen or hidden (`--no-least-visible`
leaves it out). Frames are rendered with blender_scripts.render (resumable, into SHEET's sibling
folder `<sheet>_frames/`), then tiled by ffmpeg into SHEET.png (written atomically). One JSON line last.
"""

from __future__ import annotations

import argparse
import math
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

if __package__ in (None, ""):  # run as a file (blender --python): make the package importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from blender_scripts import render
from blender_scripts.errors import ContentError, unwrapped_output_error
from renderlab.base import atomic, cli
from renderlab.base.presets import PRESETS

POSITIONS = (0.08, 0.25, 0.42, 0.58, 0.75, 0.92)  # establishing view, then the follow moves
COLUMNS = 3


def _parse(args: list[str]) -> argparse.Namespace:
    p = cli.Parser(prog="blender_scripts.look", description=__doc__.splitlines()[0])
    p.add_argument("--blend", required=True, type=Path)
    p.add_argument("--out", required=True, type=Path, help="contact sheet .png")
    p.add_argument("--positions", default=",".join(map(str, POSITIONS)), help="fractions 0..1 of the range")
    p.add_argument("--preset", choices=[k for k, v in PRESETS.items() if not v.still], default="demo")
    p.add_argument("--samples", type=int, default=8)
    p.add_argument("--resolution-percentage", type=int, default=100)
    p.add_argument("--device", choices=("auto", "cpu", "gpu"), default="auto")
    p.add_argument(
        "--no-least-visible", dest="least_visible", action="store_false",
        help="leave out the tile of the least-visible moment",
    )  # fmt: skip
    ns = p.parse_args(args)
    try:
        ns.fractions = [float(x) for x in ns.positions.split(",") if x.strip()]
    except ValueError:
        ns.fractions = []
    if not ns.fractions or any(not 0 <= f <= 1 for f in ns.fractions):
        raise ContentError(f"--positions {ns.positions!r}: give fractions between 0 and 1, e.g. 0.1,0.5,0.9")
    if ns.out.suffix.lower() != ".png":
        raise ContentError(f"--out {ns.out} must name a .png file")
    try:
        atomic.refuse_non_regular(ns.out)  # the sheet is renamed over it: never over a link or a device
    except OSError as e:
        raise ContentError(f"--out {ns.out}: {e.strerror}") from None
    if not ns.blend.is_file():
        raise ContentError(
            f"--blend {ns.blend} does not exist; build the scene first (blender_scripts.build)"
        )
    if shutil.which("ffmpeg") is None:
        raise ContentError("ffmpeg is not on PATH; install it (`make setup` does) to tile the contact sheet")
    return ns


def frame_range(blend: Path) -> tuple[int, int, int | None]:
    """(first, last, least-visible frame or None for a scene built before the measure)."""
    import bpy

    try:
        bpy.ops.wm.open_mainfile(filepath=str(blend.resolve()), load_ui=False)
    except RuntimeError as exc:
        raise ContentError(f"--blend {blend} cannot be opened by Blender ({exc}); rebuild it") from exc
    scene = bpy.context.scene
    worst = scene.get("renderlab_least_visible_frame")
    return scene.frame_start, scene.frame_end, int(worst) if worst is not None else None


def look(args: list[str]) -> dict:
    ns = _parse(args)
    started = time.perf_counter()
    first, last, worst = frame_range(ns.blend)
    frames = sorted({first + round(f * (last - first)) for f in ns.fractions})
    if ns.least_visible and worst is not None and first <= worst <= last:
        frames = [f for f in frames if f != worst] + [worst]  # the last tile
    folder = ns.out.with_name(f"{ns.out.stem}_frames")
    ns.out.parent.mkdir(parents=True, exist_ok=True)
    per_frame = []
    for i, frame in enumerate(frames, 1):
        cli.progress(f"look: frame {frame} ({i}/{len(frames)})")
        res = render.render([
            "--blend", str(ns.blend), "--frames", str(frame), "--out", str(folder), "--preset", ns.preset,
            "--samples", str(ns.samples), "--resolution-percentage", str(ns.resolution_percentage),
            "--device", ns.device,
        ])  # fmt: skip
        per_frame.append(res["per_frame_s"])
    rows = math.ceil(len(frames) / COLUMNS)
    cols = min(COLUMNS, len(frames))
    seq = folder / ".sheet"
    shutil.rmtree(seq, ignore_errors=True)
    seq.mkdir()
    for i, frame in enumerate(frames):
        os.link(folder / f"frame_{frame:06d}.png", seq / f"{i:03d}.png")
    with atomic.target(ns.out, mode=0o644) as tmp:
        cmd = ["ffmpeg", "-loglevel", "error", "-y", "-start_number", "0", "-i", str(seq / "%03d.png"),
               "-vf", f"tile={cols}x{rows}:padding=4:color=black", "-frames:v", "1", str(tmp)]  # fmt: skip
        proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
        shutil.rmtree(seq, ignore_errors=True)
        if proc.returncode or not render.png_size(tmp):
            raise ContentError(f"ffmpeg could not tile the contact sheet: {proc.stderr.strip()[-400:]}")
    return {
        "sheet": str(ns.out.resolve()),
        "size": list(render.png_size(ns.out)),
        "frames": frames,
        "positions": ns.fractions,
        "least_visible_frame": worst if ns.least_visible and worst in frames else None,
        "preset": ns.preset,
        "frame_folder": str(folder.resolve()),
        "per_frame_s": sum(per_frame) / len(per_frame),
        "seconds": time.perf_counter() - started,
    }


if __name__ == "__main__":
    cli.run_job("look", look, on_oserror=unwrapped_output_error)
