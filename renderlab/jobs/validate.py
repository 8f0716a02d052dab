"""Validate a run: every frame present and a complete PNG of one size, each MP4 with a video and an audio
stream of the expected duration, and the scene's timing report within its threshold.

    python -m renderlab.jobs.validate --spec '{"variants": {...}, "timing_report": ...}' --out report/validation.json

The spec (JSON text) lists the variants ({frames dir, first, last, fps, video}) and the timing report to check.
Writes the validation report atomically, prints it as the JSON result line, exits 1 if anything failed.
"""

from __future__ import annotations

import argparse
import json
import struct
import subprocess
import sys
from pathlib import Path

from renderlab.jobs import atomic
from renderlab.jobs.share import frame_name

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
PNG_END = b"\x00\x00\x00\x00IEND\xaeB`\x82"


def png_size(path: Path) -> tuple[int, int] | None:
    """(width, height) of a complete PNG file, None if it is truncated or not a PNG."""
    try:
        with path.open("rb") as fh:
            head = fh.read(24)
            fh.seek(max(0, path.stat().st_size - len(PNG_END)))
            tail = fh.read()
    except OSError:
        return None
    if len(head) < 24 or head[:8] != PNG_SIGNATURE or head[12:16] != b"IHDR" or tail != PNG_END:
        return None
    width, height = struct.unpack(">II", head[16:24])
    return width, height


def check_frames(frames: Path, first: int, last: int) -> list[str]:
    problems: list[str] = []
    sizes: set[tuple[int, int]] = set()
    for n in range(first, last + 1):
        path = frames / frame_name(n)
        if not path.exists():
            problems.append(f"{path}: missing")
            continue
        size = png_size(path)
        if size is None:
            problems.append(f"{path}: not a complete PNG")
        else:
            sizes.add(size)
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


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="python -m renderlab.jobs.validate", description=__doc__.split("\n")[0])
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
    report = validate(spec)
    atomic.write_json(a.out, report)
    for p in report["problems"]:
        print(f"validate: {p}", file=sys.stderr)
    print(json.dumps({**report, "report": str(a.out)}))
    return 0 if report["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
