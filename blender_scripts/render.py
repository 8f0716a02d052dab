"""Render a frame range of a built .blend with Cycles, resumable and atomic.

    python -m blender_scripts.render --blend FILE --frames A-B --out DIR [--preset NAME (presets.py)]
        [--device auto|cpu|gpu] [--samples N] [--resolution-percentage P]
        [--progress DIR [--run-frames N] [--live PAGE_DIR --title T]]

Each frame goes to DIR/.frame_NNNNNN.tmp-<pid>.png and is renamed to DIR/frame_NNNNNN.png once complete, then
DIR/.frame_NNNNNN.png.made records what made it (the .blend's bytes, preset, samples, size); a frame already
there that decodes completely (every CRC, all image data: renderlab.base.png) at the right size and records
the same maker is skipped (another scene's frames in the folder are rendered again). Temp frames of killed runs (pid gone, or the older pid-less name) are removed first. One progress line per frame
(stderr, with seconds per frame and the chunk's ETA), one JSON line last (stdout). With --progress, the
chunk's progress record (renderlab.base.progress) is replaced after every frame; with --live too, the newest
frame's thumbnail goes to PAGE_DIR/live/ and the run's live gallery page is rewritten
(renderlab.jobs.gallery_live). A progress or live page that cannot be written is a warning, never a failed
frame. `--device gpu` with no usable GPU is an error (no CPU fallback);
`auto` takes a GPU when Cycles finds one and says which device it used.
"""

from __future__ import annotations

import argparse
import contextlib
import errno
import hashlib
import os
import re
import shutil
import sys
import time
from pathlib import Path

if __package__ in (None, ""):  # run as a file (blender --python): make the package importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from blender_scripts.errors import ContentError, OutputError, output_error, unwrapped_output_error
from renderlab.base import atomic, cli, cpu_limit, estimate, png, process_group
from renderlab.base import progress as chunk_progress
from renderlab.base.presets import PRESETS
from renderlab.base.share import FRAME_PATTERN, frame_name

DEFAULT_PRESET = "demo"
GPU_BACKENDS = ("OPTIX", "CUDA", "HIP", "ONEAPI", "METAL")
TMP_FRAME = re.compile(r"^\.frame_\d{6}\.tmp(?:-(\d+))?\.png$")


def build_parser() -> cli.Parser:
    """The CLI's arguments (the DAG's render Jobs are checked against this parser)."""
    p = cli.Parser(prog="blender_scripts.render", description="render frames of a .blend")
    p.add_argument("--blend", required=True, type=Path)
    p.add_argument("--frames", required=True, help="inclusive range A-B (or one frame A)")
    p.add_argument("--out", required=True, type=Path)
    p.add_argument("--preset", choices=list(PRESETS), default=DEFAULT_PRESET)
    p.add_argument("--device", choices=("auto", "cpu", "gpu"), default="auto")
    p.add_argument("--samples", type=int, help="Cycles samples (default by preset)")
    p.add_argument("--resolution-percentage", type=int, default=100, help="1..100, shrinks the preset")
    p.add_argument(
        "--progress", type=Path, help="folder for this chunk's progress record (runs/<id>/progress)"
    )
    p.add_argument(
        "--run-frames", type=int, help="frames of the whole run, every chunk (default: this range's)"
    )
    p.add_argument("--live", type=Path, help="the run's gallery folder (gallery/runs/<id>): its live page")
    p.add_argument("--title", default="", help="the live page's title (the song)")
    p.add_argument(
        "--variant", default="main", help="the chunk's variant in its progress record (main, loop)"
    )
    return p


def _parse(args: list[str]) -> argparse.Namespace:
    p = build_parser()
    ns = p.parse_args(args)
    m = re.fullmatch(r"(\d+)(?:-(\d+))?", ns.frames)
    if not m:
        raise ContentError(f"--frames {ns.frames!r} is not a range; write A-B with whole frames, e.g. 1-120")
    ns.first, ns.last = int(m[1]), int(m[2] or m[1])
    if ns.first > ns.last:
        raise ContentError(f"--frames {ns.frames}: the first frame is after the last; write A-B with A <= B")
    if ns.samples is not None and not 1 <= ns.samples <= 65536:
        raise ContentError(f"--samples {ns.samples} is out of range; use 1..65536")
    ns.run_frames = ns.run_frames or ns.last - ns.first + 1
    if not ns.last - ns.first + 1 <= ns.run_frames <= 999_999_999:
        raise ContentError(
            f"--run-frames {ns.run_frames} is fewer than --frames {ns.frames} holds; pass the run's"
        )
    if not re.fullmatch(r"[a-z]{1,16}", ns.variant):
        raise ContentError(
            f"--variant {ns.variant!r} is not a variant name; use lowercase letters (main, loop)"
        )
    if ns.live is not None and ns.progress is None:
        raise ContentError("--live needs --progress (the page is made from the chunks' progress records)")
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
        raise output_error(e, e.filename or out, "write into") from None
    finally:
        for folder in made:  # deepest first
            with contextlib.suppress(OSError):
                folder.rmdir()


def incomplete_frame(frame: int, final: Path, expected: tuple[int, int]) -> OutputError:
    """Blender reports a failed write on its own console only; less room left than one uncompressed frame
    (RGBA, 8 bits) says the folder is full, which the user can fix, as an OSError's errno would."""
    try:
        free = shutil.disk_usage(final.parent).free
    except OSError:
        free = None
    if free is not None and free < expected[0] * expected[1] * 4:
        return output_error(OSError(errno.ENOSPC, os.strerror(errno.ENOSPC)), final, "write")
    return OutputError(
        f"frame {frame}: Blender wrote no complete {expected[0]}x{expected[1]} PNG into {final.parent} "
        "(is it read-only?)"
    )


def clean_leftovers(out: Path) -> list[str]:
    """Temp frames of killed renders: the pid in the name is gone (or the name has none, from before)."""
    removed = []
    for name in os.listdir(out):
        m = TMP_FRAME.fullmatch(name)
        if m and (m[1] is None or not process_group.alive(int(m[1]))):
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


def provenance(blend: Path, *, preset: str, samples: int, resolution: tuple[int, int]) -> str:
    """What made a frame: the scene file's bytes, the preset, the samples and the size. A frame is reused
    only when it was made by the same, so a folder holding another scene's frames is rendered again."""
    h = hashlib.sha256()
    with open(blend, "rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    h.update(f"\0{preset}\0{samples}\0{resolution[0]}x{resolution[1]}".encode())
    return h.hexdigest()


def provenance_path(final: Path) -> Path:
    """The frame's record, hidden beside it (frame_NNNNNN.png -> .frame_NNNNNN.png.made)."""
    return final.with_name(f".{final.name}.made")


def record_provenance(final: Path, key: str) -> None:
    atomic.write_text(provenance_path(final), key + "\n", mode=0o644)


def reusable(final: Path, expected: tuple[int, int], key: str) -> bool:
    """A finished frame is kept when it decodes completely at the right size and records the same maker."""
    if png_size(final) != expected:
        return False
    try:
        return provenance_path(final).read_text(encoding="utf-8").strip() == key
    except (OSError, UnicodeDecodeError):
        return False


THUMB_WIDTH = 320


def thumbnail(bpy, src: Path, dst: Path, width: int = THUMB_WIDTH) -> None:
    """`src` downscaled to `width` pixels wide (never up), as a PNG at `dst` (replaced whole)."""
    img = bpy.data.images.load(str(src), check_existing=False)
    try:
        w, h = img.size
        if w > width:
            img.scale(width, max(1, round(h * width / w)))
        with atomic.target(dst, mode=0o644) as tmp:
            img.filepath_raw = str(tmp)
            img.file_format = "PNG"
            img.save()
    finally:
        bpy.data.images.remove(img)


class Reporter:
    """The chunk's progress: a log line per frame, and with --progress its record (and the live page)."""

    def __init__(self, ns: argparse.Namespace, bpy) -> None:
        self.ns, self.bpy = ns, bpy
        self.total = ns.last - ns.first + 1
        self.done, self.times, self.newest = 0, [], None
        self.pending = False

    def frame(self, number: int, seconds: float | None) -> str:
        """A frame finished (rendered in `seconds`, or kept from before: None). The log line's tail."""
        self.done += 1
        if seconds is None:
            self.pending = True  # kept frames are reported in one go, before the next render or at the end
            return ""
        self.times.append(seconds)
        self.newest = number
        self.write()
        per_frame = estimate.seconds_per_frame(self.times)
        eta = estimate.chunk_eta(self.times, self.total - self.done)
        return f"; {self.done}/{self.total} done, {per_frame:.2f} s/frame, ETA {estimate.duration(eta)}"

    def flush(self) -> None:
        if self.pending:
            self.write()

    def write(self) -> None:
        self.pending = False
        ns = self.ns
        if ns.progress is None:
            return
        record = chunk_progress.ChunkProgress(
            variant=ns.variant,
            first=ns.first,
            last=ns.last,
            done=self.done,
            run_frames=ns.run_frames,
            per_frame_s=estimate.seconds_per_frame(self.times),
            eta_s=estimate.chunk_eta(self.times, self.total - self.done),
            newest_frame=self.newest,
            updated=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        )
        try:
            chunk_progress.write(ns.progress, record)
            if ns.live is not None:
                from renderlab.jobs import gallery_live  # jinja2: only a render with a live page needs it

                if self.newest is not None:
                    thumbnail(
                        self.bpy,
                        ns.out / frame_name(self.newest),
                        gallery_live.thumb_path(ns.live, record.key),
                    )
                gallery_live.publish_live(ns.progress, ns.live, ns.title or ns.live.name)
        except (OSError, RuntimeError) as e:  # RuntimeError: Blender could not read or write the thumbnail
            cli.progress(f"render: warning: the progress of frames {ns.frames} was not published ({e})")


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
    limit = cpu_limit.threads()
    if limit is not None and limit < (os.cpu_count() or limit + 1):
        # Blender would start a thread per core of the node, all throttled to the container's quota.
        scene.render.threads_mode, scene.render.threads = "FIXED", limit
        cli.progress(
            f"render: {limit} render threads (the container's CPU limit; the node has {os.cpu_count()})"
        )

    out = ns.out
    out.mkdir(parents=True, exist_ok=True)
    for name in clean_leftovers(out):
        cli.progress(f"render: removed {name}, left by a render that was killed")
    rendered, skipped, times = 0, 0, []
    started = time.perf_counter()
    total = ns.last - ns.first + 1
    key = provenance(ns.blend, preset=ns.preset, samples=scene.cycles.samples, resolution=expected)
    reporter = Reporter(ns, bpy)
    for i, frame in enumerate(range(ns.first, ns.last + 1), 1):
        if cli.stopping():  # a SIGTERM Blender's render callback swallowed: stop between frames
            raise KeyboardInterrupt
        final = out / frame_name(frame)
        if reusable(final, expected, key):
            skipped += 1
            reporter.frame(frame, None)
            cli.progress(f"render: frame {frame} ({i}/{total}) already done, skipped")
            continue
        reporter.flush()
        t0 = time.perf_counter()
        try:  # the pid in the temp name tells a later run whether this one is still alive
            with atomic.target(final, mode=0o644, temp=out / f".{final.stem}.tmp-{os.getpid()}.png") as tmp:
                scene.frame_set(frame)
                scene.render.filepath = str(tmp)
                bpy.ops.render.render(write_still=True)
                if png_size(tmp) != expected:
                    raise incomplete_frame(frame, final, expected)
            record_provenance(final, key)  # after the frame: a kill in between only costs a re-render
        except OSError as e:
            raise output_error(e, final, "write") from None
        times.append(time.perf_counter() - t0)
        rendered += 1
        tail = reporter.frame(frame, times[-1])
        cli.progress(f"render: frame {frame} ({i}/{total}) {times[-1]:.2f} s on {device}{tail}")
    reporter.flush()
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
    cli.run_job("render", render, on_oserror=unwrapped_output_error)
