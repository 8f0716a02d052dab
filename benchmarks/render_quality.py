"""Render cost at equal quality: seconds per frame and the difference from a converged reference, per Cycles
setting, side by side in one run (not a test).

    .venv/bin/python benchmarks/render_quality.py [--preset 1080p60] [--scale 10] [--frames ode_waltz@660,...]
        [--ref-samples 2048] [--eta-frames 6] [--candidates "samples/2,samples/4,..."]

For each frame (song@frame; a busy frame, a camera move and a quiet one of the demo songs by default) the
reference is rendered once with many samples and no denoiser, then cached outside git in
~/.cache/renderlab/render-quality/ under a key of the song's inputs, the content code, the frame, the size
and the reference settings (a changed scene is rendered again). Every candidate renders the same frames in
this process; each is compared with the reference by NVIDIA's FLIP (flip-evaluator; lower is better) and
SSIM (higher is better), and its time against the preset's settings today. The line "chosen" is the
cheapest candidate whose mean FLIP is no worse than today's. Last: the ETA estimator's error on a short
chunk, and the preset's per-frame figure (the plan's estimate) against the measured time.

--scale renders at that percentage of the preset's size (the reference too), so it runs small on a laptop;
FLIP's viewing distance is its default (67 pixels per degree).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from renderlab.base import estimate  # noqa: E402
from renderlab.base.presets import PRESETS  # noqa: E402

CACHE = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "renderlab" / "render-quality"
DEPOT = ROOT / "depot" / "songs"
# ode_waltz: frame 660 busy (many marbles in flight), 400 during a camera move, 30 quiet (the intro);
# frere_groove: 900, a dense drum passage; dense_pop (generated, not in the depot): 1200, six instruments with
# drums, the most marbles and families in one frame.
DEFAULT_FRAMES = "ode_waltz@660,ode_waltz@400,ode_waltz@30,frere_groove@900,dense_pop@1200"
GENERATED = ("dense_pop",)  # blender_scripts.demo_songs writes these; written into the cache once

# Fitted to these scenes: opaque wood and metal, chrome marbles, a few lights; no glass, so no caustics and
# few transmission bounces.
FITTED_BOUNCES = {
    "max_bounces": 6,
    "diffuse_bounces": 2,
    "glossy_bounces": 3,
    "transmission_bounces": 2,
    "transparent_max_bounces": 4,
    "caustics_reflective": False,
    "caustics_refractive": False,
}


def candidates(samples: int) -> dict[str, dict]:
    """name -> scene.cycles settings over Blender's defaults (which the presets use today)."""
    fast = {"adaptive_threshold": 0.05, **FITTED_BOUNCES}
    return {
        "today": {"samples": samples},
        "no denoiser": {"samples": samples, "use_denoising": False},
        "samples/2": {"samples": samples // 2},
        "samples/4": {"samples": samples // 4},
        "samples/8": {"samples": max(1, samples // 8)},
        "threshold 0.05": {"samples": samples, "adaptive_threshold": 0.05},
        "threshold 0.1": {"samples": samples, "adaptive_threshold": 0.1},
        "OIDN rgb only": {"samples": samples, "denoising_input_passes": "RGB"},
        "OIDN prefilter fast": {"samples": samples, "denoising_prefilter": "FAST"},
        "no light tree": {"samples": samples, "use_light_tree": False},
        "path guiding": {"samples": samples, "use_guiding": True},
        "fitted bounces": {"samples": samples, **FITTED_BOUNCES},
        "s/4 + t0.05 + bounces": {"samples": samples // 4, **fast},
        "s/8 + t0.05 + bounces": {"samples": max(1, samples // 8), **fast},
    }


def reference_settings(ref_samples: int) -> dict:
    return {"samples": ref_samples, "use_denoising": False, "use_adaptive_sampling": False}


def song_dir(song: str) -> Path:
    """The folder holding the song's song.mid (and arrangement.yaml): the depot's, or the cache's for a
    generated song (written by blender_scripts.demo_songs the first time)."""
    if song not in GENERATED:
        return DEPOT / song
    folder = CACHE / "songs" / song
    if not (folder / "song.mid").is_file():
        from blender_scripts import demo_songs
        from renderlab.base import atomic

        with atomic.target(folder / "song.mid", mode=0o644) as tmp:
            getattr(demo_songs, song)().save(str(tmp))
    return folder


def song_key(song: str) -> str:
    """The song's inputs and the content code: a change to either renders the references again."""
    h = hashlib.sha256()
    for path in sorted(song_dir(song).rglob("*")) + sorted((ROOT / "blender_scripts").glob("*.py")):
        if path.is_file():
            h.update(path.name.encode() + b"\0" + path.read_bytes())
    return h.hexdigest()[:16]


def build(song: str, fps: int) -> Path:
    """The song's .blend, built once into the cache."""
    out = CACHE / "scenes" / f"{song}-{fps}-{song_key(song)}"
    blend = out / "song.blend"
    if blend.is_file():
        return blend
    cmd = [
        sys.executable,
        "-m",
        "blender_scripts.build",
        "--midi",
        str(song_dir(song) / "song.mid"),
        "--out",
        str(out),
    ]
    if (song_dir(song) / "arrangement.yaml").is_file():
        cmd += ["--arrangement", str(song_dir(song) / "arrangement.yaml")]
    subprocess.run([*cmd, "--fps", str(fps)], check=True, cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)},
                   stdout=subprocess.DEVNULL)  # fmt: skip
    return blend


class Renderer:
    """Renders frames of one .blend at a time in this process (bpy), at the preset's size scaled."""

    def __init__(self, preset: str, scale: int):
        import bpy

        self.bpy, self.preset, self.scale, self.open = bpy, preset, scale, None

    def render(self, blend: Path, frame: int, settings: dict, out: Path) -> float:
        from blender_scripts.render import apply_settings

        bpy = self.bpy
        if self.open != blend:
            bpy.ops.wm.open_mainfile(filepath=str(blend), load_ui=False)
            self.open = blend
        scene = bpy.context.scene
        apply_settings(scene, self.preset, None, self.scale)
        scene.cycles.device = "CPU"
        defaults = {  # Blender's own defaults, restored before each candidate's changes
            "use_adaptive_sampling": True, "adaptive_threshold": 0.01, "use_denoising": True,
            "denoiser": "OPENIMAGEDENOISE", "denoising_input_passes": "RGB_ALBEDO_NORMAL",
            "denoising_prefilter": "ACCURATE", "use_light_tree": True, "use_guiding": False, "max_bounces": 12,
            "diffuse_bounces": 4, "glossy_bounces": 4, "transmission_bounces": 12, "transparent_max_bounces": 8,
            "caustics_reflective": True, "caustics_refractive": True,
        }  # fmt: skip
        for key, value in {**defaults, **settings}.items():
            setattr(scene.cycles, key, value)
        scene.frame_set(frame)
        scene.render.filepath = str(out)
        t0 = time.perf_counter()
        bpy.ops.render.render(write_still=True)
        return time.perf_counter() - t0


def load(path: Path) -> np.ndarray:
    import flip_evaluator

    return np.asarray(flip_evaluator.load(str(path)), dtype=np.float64)[..., :3]


def flip(ref: Path, test: Path) -> float:
    import flip_evaluator

    return float(flip_evaluator.evaluate(str(ref), str(test), "LDR", applyMagma=False)[1])


def _gauss_blur(img: np.ndarray, sigma: float = 1.5, radius: int = 5) -> np.ndarray:
    x = np.arange(-radius, radius + 1)
    k = np.exp(-(x**2) / (2 * sigma**2))
    k /= k.sum()
    pad = np.pad(img, radius, mode="reflect")
    rows = np.apply_along_axis(lambda r: np.convolve(r, k, mode="valid"), 1, pad)
    return np.apply_along_axis(lambda c: np.convolve(c, k, mode="valid"), 0, rows)


def ssim(ref: np.ndarray, test: np.ndarray) -> float:
    """Mean SSIM of the luma (Wang et al. 2004: 11x11 Gaussian window, sigma 1.5, K1 0.01, K2 0.03)."""
    w = np.array([0.2126, 0.7152, 0.0722])
    a, b = ref @ w, test @ w
    c1, c2 = 0.01**2, 0.03**2
    mu_a, mu_b = _gauss_blur(a), _gauss_blur(b)
    var_a = _gauss_blur(a * a) - mu_a**2
    var_b = _gauss_blur(b * b) - mu_b**2
    cov = _gauss_blur(a * b) - mu_a * mu_b
    s = ((2 * mu_a * mu_b + c1) * (2 * cov + c2)) / ((mu_a**2 + mu_b**2 + c1) * (var_a + var_b + c2))
    return float(s.mean())


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--preset", default="1080p60", choices=list(PRESETS))
    ap.add_argument("--scale", type=int, default=10, help="percent of the preset's width and height")
    ap.add_argument("--frames", default=DEFAULT_FRAMES, help="song@frame, comma separated")
    ap.add_argument("--ref-samples", type=int, default=2048)
    ap.add_argument("--eta-frames", type=int, default=6, help="frames of the ETA check (0: none)")
    ap.add_argument(
        "--candidates",
        help="only these candidates, comma separated (today's always runs: it is the baseline); default all",
    )
    a = ap.parse_args()
    if not 1 <= a.scale <= 100:
        ap.error("--scale is a percentage, 1..100")
    preset = PRESETS[a.preset]
    fps = preset.fps or 60
    frames = []
    for item in a.frames.split(","):
        song, _, number = item.partition("@")
        if not (song in GENERATED or (DEPOT / song / "song.mid").is_file()) or not number.isdigit():
            ap.error(f"--frames {item!r}: write song@frame with a song of {DEPOT} or {', '.join(GENERATED)}")
        frames.append((song, int(number)))
    blends = {song: build(song, fps) for song in {s for s, _ in frames}}
    r = Renderer(a.preset, a.scale)
    work = Path(tempfile.mkdtemp(prefix="render-quality-"))
    ref_dir = CACHE / "references"
    refs = {}
    for song, number in frames:
        key = hashlib.sha256(json.dumps([song_key(song), number, a.preset, a.scale, fps,
                                         reference_settings(a.ref_samples)]).encode()).hexdigest()[:20]  # fmt: skip
        path = ref_dir / f"{song}-{number}-{key}.png"
        if not path.is_file():
            print(f"reference {song}@{number}: {a.ref_samples} samples, no denoiser (cached for next time)...",
                  file=sys.stderr, flush=True)  # fmt: skip
            ref_dir.mkdir(parents=True, exist_ok=True)
            tmp = path.with_suffix(".tmp.png")
            r.render(blends[song], number, reference_settings(a.ref_samples), tmp)
            tmp.replace(path)
        refs[(song, number)] = path
    chosen_names = None if not a.candidates else {"today", *(n.strip() for n in a.candidates.split(","))}
    everyone = candidates(preset.samples)
    if chosen_names and not chosen_names <= set(everyone):
        ap.error(
            f"--candidates: unknown {sorted(chosen_names - set(everyone))}; known: {', '.join(everyone)}"
        )
    rows = []
    for name, settings in everyone.items():
        if chosen_names and name not in chosen_names:
            continue
        times, flips, ssims = [], [], []
        for song, number in frames:
            out = work / f"{name.replace('/', '_').replace(' ', '_')}-{song}-{number}.png"
            times.append(r.render(blends[song], number, settings, out))
            flips.append(flip(refs[(song, number)], out))
            ssims.append(ssim(load(refs[(song, number)]), load(out)))
        rows.append({"name": name, "settings": settings, "s": float(np.mean(times)), "flip": float(np.mean(flips)),
                     "ssim": float(np.mean(ssims)), "flips": flips})  # fmt: skip
        print(
            f"  {name}: {rows[-1]['s']:.2f} s/frame, FLIP {rows[-1]['flip']:.4f}", file=sys.stderr, flush=True
        )
    today = rows[0]
    w, h = preset.width * a.scale // 100, preset.height * a.scale // 100
    print(f"\n{a.preset} at {a.scale} % ({w}x{h}), {len(frames)} frames ({a.frames}); reference {a.ref_samples} "
          f"samples, no denoiser; CPU, {os.cpu_count()} cores")  # fmt: skip
    print(f"{'candidate':<24} {'s/frame':>8} {'FLIP':>7} {'SSIM':>7} {'speedup':>8}  equal-or-better FLIP")
    for row in rows:
        ok = row["flip"] <= today["flip"]
        print(f"{row['name']:<24} {row['s']:>8.2f} {row['flip']:>7.4f} {row['ssim']:>7.4f} "
              f"{today['s'] / row['s']:>7.2f}x  {'yes' if ok else 'no'}")  # fmt: skip
    within = [row for row in rows if row["flip"] <= today["flip"]]
    chosen = min(within, key=lambda row: row["s"])
    print(f"chosen (cheapest with FLIP <= today's {today['flip']:.4f}): {chosen['name']} {json.dumps(chosen['settings'])}"
          f": {today['s'] / chosen['s']:.2f}x less time per frame, FLIP {chosen['flip']:.4f}")  # fmt: skip

    if a.eta_frames >= 3:
        song, number = frames[0]
        times = [r.render(blends[song], number + i, chosen["settings"], work / f"eta-{i}.png")
                 for i in range(a.eta_frames)]  # fmt: skip
        predicted = estimate.chunk_eta(times[:2], a.eta_frames - 2) or 0.0
        actual = sum(times[2:])
        print(f"ETA after 2 of {a.eta_frames} frames: predicted {predicted:.1f} s, actual {actual:.1f} s "
              f"(error {100 * (predicted - actual) / actual:+.1f} %)")  # fmt: skip
    planned = estimate.render_estimate(1, a.preset, None, a.scale, cores=os.cpu_count() or 1)
    print(f"plan estimate for today's setting: {planned.task_seconds_per_frame:.2f} s/frame; measured "
          f"{today['s']:.2f} s/frame (ratio {planned.task_seconds_per_frame / today['s']:.2f})")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
