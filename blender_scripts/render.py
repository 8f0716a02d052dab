"""Render a frame range of a built .blend with Cycles, resumable and atomic.

    python -m blender_scripts.render --blend FILE --frames A-B --out DIR [--preset NAME (presets.py)]
        [--device auto|cpu|gpu] [--samples N] [--resolution-percentage P]

Each frame goes to DIR/.frame_NNNNNN.tmp-<pid>.png and is renamed to DIR/frame_NNNNNN.png once complete; a
frame already there that decodes completely (every CRC, all image data: renderlab.base.png) at the right
size is skipped. Temp frames of killed runs (pid gone, or the older pid-less name) are removed first. One progress line per frame
(stderr), one JSON line last (stdout). `--device gpu` with no usable GPU is an error (no CPU fallback);
`auto` takes a GPU when Cycles finds one and says which device it used.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import re
import sys
import time
from pathlib import Path

if __package__ in (None, ""):  # run as a file (blender --python): make the package importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from blender_scripts import _cli
from blender_scripts.errors import ContentError, OutputError
from renderlab.base import png
from renderlab.base.presets import PRESETS
from renderlab.base.share import FRAME_PATTERN, frame_name

DEFAULT_PRESET = "demo"
GPU_BACKENDS = ("OPTIX", "CUDA", "HIP", "ONEAPI", "METAL")
TMP_FRAME = re.compile(r"^\.frame_\d{6}\.tmp(?:-(\d+))?\.png$")


def build_parser() -> argparse.ArgumentParser:
    """The CLI's arguments (the DAG's render Jobs are checked against this parser)."""
    p = argparse.ArgumentParser(prog="blender_scripts.render", description="render frames of a .blend")
    p.add_argument("--blend", required=True, type=Path)
    p.add_argument("--frames", required=True, help="inclusive range A-B (or one frame A)")
    p.add_argument("--out", required=True, type=Path)
    p.add_argument("--preset", choices=list(PRESETS), default=DEFAULT_PRESET)
    p.add_argument("--device", choices=("auto", "cpu", "gpu"), default="auto")
    p.add_argument("--samples", type=int, help="Cycles samples (default by preset)")
    p.add_argument("--resolution-percentage", type=int, default=100, help="1..100, shrinks the preset")
    return p


def _parse(args: list[str]) -> argparse.Namespace:
    p = build_parser()
    p.error = lambda msg: (_ for _ in ()).throw(ContentError(f"{msg} (usage: {p.format_usage().strip()})"))
    ns = p.parse_args(args)
    m = re.fullmatch(r"(\d+)(?:-(\d+))?", ns.frames)
    if not m:
        raise ContentError(f"--frames {ns.frames!r} is not a range; write A-B with whole frames, e.g. 1-120")
    ns.first, ns.last = int(m[1]), int(m[2] or m[1])
    if ns.first > ns.last:
        raise ContentError(f"--frames {ns.frames}: the first frame is after the last; write A-B with A <= B")
    if ns.samples is not None and not 1 <= ns.samples <= 65536:
        raise ContentError(f"--samples {ns.samples} is out of range; use 1..65536")
    if not 1 <= ns.resolution_percentage <= 100:
        raise ContentError(f"--resolution-percentage {ns.resolution_percentage} is out of range; use 1..100")
    if PRESETS[ns.preset].still and ns.first != ns.last:
        raise ContentError(
            f"--preset {ns.preset} renders one still frame; pass --frames N (one frame), not {ns.frames}"
        )
    if not ns.blend.is_file():
        raise ContentError(
            f"--blend {ns.blend} does not exist; build the scene first (blender_scripts.build)"
        )
    if ns.out.exists() and not ns.out.is_dir():
        raise OutputError(f"--out {ns.out} exists and is not a folder; pass a folder path")
    writable_out(ns.out)
    return ns


def png_size(path: Path) -> tuple[int, int] | None:
    """(width, height) of a PNG that decodes completely, else None (renderlab.base.png)."""
    return png.size(path)


def writable_out(out: Path) -> None:
    """Prove --out takes a file before Blender starts (one line, not a traceback, if not). Folders made for
    the probe are removed again: a render refused later (bad frames, no GPU) leaves nothing behind."""
    made = [p for p in (out, *out.parents) if not p.exists()]
    probe = out / f".write-probe-{os.getpid()}"
    try:
        out.mkdir(parents=True, exist_ok=True)
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as e:
        raise _cli.output_error(e, e.filename or out, "write into") from None
    finally:
        for folder in made:  # deepest first
            with contextlib.suppress(OSError):
                folder.rmdir()


def clean_leftovers(out: Path) -> list[str]:
    """Temp frames of killed renders: the pid in the name is gone (or the name has none, from before)."""
    removed = []
    for name in os.listdir(out):
        m = TMP_FRAME.fullmatch(name)
        if m and (m[1] is None or not _cli.pid_alive(int(m[1]))):
            with contextlib.suppress(FileNotFoundError):
                (out / name).unlink()
                removed.append(name)
    return removed


def _device(bpy, scene, wanted: str) -> str:
    scene.cycles.device = "CPU"
    if wanted == "cpu":
        return "cpu"
    prefs = bpy.context.preferences.addons["cycles"].preferences
    tried = []
    for backend in GPU_BACKENDS:
        try:
            prefs.compute_device_type = backend
        except TypeError:
            continue  # backend not built into this Blender
        prefs.refresh_devices()
        gpus = [d for d in prefs.devices if d.type == backend]
        tried.append(backend)
        if gpus:
            for d in prefs.devices:
                d.use = d.type == backend
            scene.cycles.device = "GPU"
            return f"gpu:{backend}:{gpus[0].name}"
    if wanted == "gpu":
        raise ContentError(
            f"--device gpu: Cycles finds no GPU (tried {', '.join(tried) or 'no backend available'}); "
            "check the driver and that the GPU is passed through, or use --device cpu"
        )
    prefs.compute_device_type = "NONE"
    return "cpu"


def apply_settings(
    scene, preset: str, samples: int | None = None, resolution_percentage: int = 100
) -> tuple[int, int]:
    """The one place that sets a scene's render engine, size, samples and output format (the build saves
    the default preset's; each render applies its own). Returns the frame size it will write."""
    width, height = PRESETS[preset].width, PRESETS[preset].height
    r = scene.render
    r.engine = "CYCLES"
    r.resolution_x, r.resolution_y = width, height
    r.resolution_percentage = resolution_percentage
    r.image_settings.file_format = "PNG"
    r.use_file_extension = True
    scene.cycles.samples = samples or PRESETS[preset].samples
    return (width * resolution_percentage // 100, height * resolution_percentage // 100)


def render(args: list[str]) -> dict:
    ns = _parse(args)
    import bpy

    try:
        bpy.ops.wm.open_mainfile(filepath=str(ns.blend.resolve()), load_ui=False)
    except RuntimeError as exc:
        raise ContentError(f"--blend {ns.blend} cannot be opened by Blender ({exc}); rebuild it") from exc
    scene = bpy.context.scene
    if not (scene.frame_start <= ns.first and ns.last <= scene.frame_end):
        raise ContentError(
            f"--frames {ns.frames} is outside {ns.blend.name}'s range {scene.frame_start}-{scene.frame_end}"
        )
    preset = PRESETS[ns.preset]
    fps = scene.render.fps / scene.render.fps_base
    if preset.fps and abs(fps - preset.fps) > 1e-6:
        raise ContentError(
            f"--preset {ns.preset} is {preset.fps} fps but {ns.blend.name} was built at {fps:g} fps; "
            f"rebuild it with --fps {preset.fps} or pick a preset without a frame rate (demo, hd, 4k)"
        )
    device = _device(bpy, scene, ns.device)
    expected = apply_settings(scene, ns.preset, ns.samples, ns.resolution_percentage)
    scene.render.use_persistent_data = True  # keep the BVH between frames of one run

    out = ns.out
    out.mkdir(parents=True, exist_ok=True)
    for name in clean_leftovers(out):
        _cli.progress(f"render: removed {name}, left by a render that was killed")
    rendered, skipped, times = 0, 0, []
    started = time.perf_counter()
    total = ns.last - ns.first + 1
    for i, frame in enumerate(range(ns.first, ns.last + 1), 1):
        final = out / frame_name(frame)
        if png_size(final) == expected:
            skipped += 1
            _cli.progress(f"render: frame {frame} ({i}/{total}) already done, skipped")
            continue
        tmp = out / f".{final.stem}.tmp-{os.getpid()}.png"
        t0 = time.perf_counter()
        scene.frame_set(frame)
        scene.render.filepath = str(tmp)
        bpy.ops.render.render(write_still=True)
        if png_size(tmp) != expected:
            tmp.unlink(missing_ok=True)
            raise OutputError(
                f"frame {frame}: Blender wrote no complete {expected[0]}x{expected[1]} PNG into {out} "
                "(is it full or read-only?)"
            )
        try:
            os.replace(tmp, final)
        except OSError as e:
            tmp.unlink(missing_ok=True)
            raise _cli.output_error(e, final, "write") from None
        times.append(time.perf_counter() - t0)
        rendered += 1
        _cli.progress(f"render: frame {frame} ({i}/{total}) {times[-1]:.2f} s on {device}")
    return {
        "rendered": rendered,
        "skipped": skipped,
        "seconds": time.perf_counter() - started,
        "per_frame_s": (sum(times) / len(times)) if times else 0.0,
        "frames": [ns.first, ns.last],
        "out": str(out.resolve()),
        "pattern": FRAME_PATTERN,
        "device": device,
        "preset": ns.preset,
        "resolution": list(expected),
        "samples": scene.cycles.samples,
    }


if __name__ == "__main__":
    _cli.run("render", render)
