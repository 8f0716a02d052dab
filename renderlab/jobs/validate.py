"""Validate a run: every frame present and a complete PNG of one size, each MP4 with a video and an audio
stream of the expected duration, and the scene's timing report within its threshold.

    python -m renderlab.jobs.validate --spec '{"variants": {...}, "timing_report": ...}' --out report/validation.json

The spec (JSON text) lists the variants ({frames dir, first, last, fps, video}) and the timing report to check.
Writes the validation report atomically, prints it as the JSON result line, exits 1 if anything failed
(2: bad arguments or --spec, 3: the report cannot be written, 70: internal error).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from renderlab.base import atomic, cli, png
from renderlab.base.share import frame_name
from renderlab.jobs.assemble import MAX_FRAMES


def png_size(path: Path) -> tuple[int, int] | None:
    """(width, height) of a PNG that decodes completely (every CRC, all image data), None otherwise."""
    return png.size(path)


def check_frames(frames: Path, first: int, last: int) -> list[str]:
    problems: list[str] = []
    sizes: set[tuple[int, int]] = set()
    for n in range(first, last + 1):
        path = frames / frame_name(n)
        if not path.exists():
            problems.append(f"{path}: missing")
            continue
        try:
            sizes.add(png.verify(path))
        except png.BadPNG as e:
            problems.append(f"{path}: not a complete PNG ({e})")
    if len(sizes) > 1:
        problems.append(f"{frames}: frames have different sizes {sorted(sizes)}")
    return problems


def probe(video: Path) -> dict:
    proc = subprocess.run(
        ["ffprobe", "-v", "error", "-show_streams", "-show_format", "-of", "json", str(video)],
        capture_output=True,
        text=True,
        check=False,
    )
    if proc.returncode != 0:
        raise ValueError(proc.stderr.strip() or f"ffprobe exited {proc.returncode}")
    return json.loads(proc.stdout)


def check_video(video: Path, expected_s: float, fps: int) -> tuple[list[str], dict]:
    if not video.is_file():
        return [f"{video}: missing"], {}
    try:
        info = probe(video)
    except ValueError as e:
        return [f"{video}: unreadable: {e}"], {}
    streams = {s["codec_type"]: s for s in info.get("streams", [])}
    problems = [f"{video}: no {kind} stream" for kind in ("video", "audio") if kind not in streams]
    summary: dict = {"path": str(video)}
    # Audio frames (AAC: 1024 samples) may overhang the video by a fraction of a frame.
    tolerance = max(1.5 / fps, 0.05)
    for kind, stream in streams.items():
        if kind not in ("video", "audio"):
            continue
        duration = float(stream.get("duration") or info["format"].get("duration") or 0)
        summary[f"{kind}_duration_s"] = round(duration, 4)
        if abs(duration - expected_s) > tolerance:
            problems.append(f"{video}: {kind} lasts {duration:.3f}s, expected {expected_s:.3f}s")
    return problems, summary


def check_timing(report: Path, threshold_ms: float) -> tuple[list[str], dict]:
    """The build's timing report: the worst hit (max_timing_error_s) must be within the threshold."""
    try:
        data = json.loads(report.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as e:
        return [f"{report}: unreadable timing report: {e}"], {}
    worst_s = data.get("max_timing_error_s")
    if not isinstance(worst_s, int | float):
        return [f"{report}: has no max_timing_error_s; rebuild the scene with blender_scripts.build"], {}
    worst = abs(float(worst_s)) * 1000
    summary = {"max_error_ms": round(worst, 3), "threshold_ms": round(threshold_ms, 3)}
    if worst > threshold_ms:
        return [
            f"{report}: worst timing error {worst:.2f} ms exceeds the threshold {threshold_ms:.2f} ms"
        ], summary
    return [], summary


def validate(spec: dict) -> dict:
    problems: list[str] = []
    variants = {}
    for name, v in spec.get("variants", {}).items():
        frames = Path(v["frames"])
        p = check_frames(frames, v["first"], v["last"])
        expected = (v["last"] - v["first"] + 1) / v["fps"]
        vp, summary = check_video(Path(v["video"]), expected, v["fps"])
        problems += p + vp
        variants[name] = {"frames": v["last"] - v["first"] + 1, "video": summary, "problems": len(p + vp)}
    timing: dict = {}
    if spec.get("timing_report"):
        tp, timing = check_timing(Path(spec["timing_report"]), float(spec["timing_threshold_ms"]))
        problems += tp
    return {"ok": not problems, "problems": problems, "variants": variants, "timing": timing}


def build_parser() -> cli.Parser:
    ap = cli.Parser(prog="python -m renderlab.jobs.validate", description=__doc__.split("\n")[0])
    ap.add_argument("--spec", required=True, help="JSON: variants and timing_report")
    ap.add_argument("--out", type=Path, required=True)
    return ap


def main(argv: list[str] | None = None) -> int:
    a = build_parser().parse_args(argv)
    try:
        spec = json.loads(a.spec)
    except json.JSONDecodeError as e:
        print(f"validate: error: --spec is not JSON: {e}", file=sys.stderr)
        return 2
    problem = spec_problem(spec)
    if problem:
        print(f"validate: error: --spec {problem}", file=sys.stderr)
        return 2
    report = validate(spec)
    try:
        atomic.write_json(a.out, report)
    except OSError as e:
        print(f"validate: error: cannot write {a.out}: {e.strerror or e}", file=sys.stderr)
        return 3
    for p in report["problems"]:
        print(f"validate: {p}", file=sys.stderr)
    print(json.dumps({**report, "report": str(a.out)}))
    return 0 if report["ok"] else 1


def spec_problem(spec: object) -> str | None:
    """What is wrong with a --spec document, or None (it comes from the DAG, but is still checked)."""
    if not isinstance(spec, dict):
        return f"must be a JSON object, not {type(spec).__name__}"
    variants = spec.get("variants", {})
    if not isinstance(variants, dict):
        return "variants must be an object of name -> {frames, first, last, fps, video}"
    for name, v in variants.items():
        if not isinstance(v, dict) or not {"frames", "first", "last", "fps", "video"} <= set(v):
            return f"variants.{name} needs frames, first, last, fps and video"
        ints = [v[k] for k in ("first", "last", "fps")]
        if not all(isinstance(x, int) and not isinstance(x, bool) for x in ints):
            return f"variants.{name}: first, last and fps must be whole numbers"
        if v["fps"] < 1 or v["first"] < 0 or not 0 <= v["last"] - v["first"] < MAX_FRAMES:
            return f"variants.{name}: need fps >= 1, 0 <= first <= last and at most {MAX_FRAMES} frames"
        if not isinstance(v["frames"], str) or not isinstance(v["video"], str):
            return f"variants.{name}: frames and video must be paths"
    if spec.get("timing_report") is not None:
        if not isinstance(spec["timing_report"], str):
            return "timing_report must be a path"
        t = spec.get("timing_threshold_ms")
        if not isinstance(t, int | float) or isinstance(t, bool) or not t > 0:
            return "timing_threshold_ms must be a positive number"
    return None


if __name__ == "__main__":
    sys.exit(cli.guard("validate", main))
