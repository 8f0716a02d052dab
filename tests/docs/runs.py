"""A small real run folder on a share, made the way the pipeline makes one: ffmpeg test frames (in place of
Blender's), then the real `renderlab.jobs.assemble` (MP4 with a tone as audio, contact sheet) and the real
`renderlab.jobs.validate`. The timing report has blender_scripts' shape (per note: time, element, error)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from renderlab.base.share import ShareLayout

REPO = Path(__file__).resolve().parents[2]


def _run(args: list[str], cwd: Path) -> dict:
    proc = subprocess.run([sys.executable, *args], cwd=cwd, capture_output=True, text=True, check=False,
                          env={"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin"})  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-2000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def visibility(strikes: int, visible: int) -> dict:
    """A strike-visibility block of blender_scripts.visibility.summary's shape."""
    missed = strikes - visible
    return {
        "strikes": strikes, "visible": visible, "fraction": round(visible / strikes, 4), "in_view": 1.0,
        "unoccluded": round(visible / strikes, 4), "median_px": 41.4, "min_px": 17.5, "edge_margin": 0.03,
        "reference_size": [1920, 1080], "passage_s": 4.0,
        "worst_passages": [{"start_s": 1.5, "end_s": 1.5, "strikes": 16, "visible": 16 - missed,
                            "fraction": round((16 - missed) / 16, 4)}],
        "least_visible": {"frame": 37, "time_s": 1.5, "missed_nearby": missed},
    }  # fmt: skip


def make_run(share: Path, run_id: str, song: str = "tiny", frames: int = 36, fps: int = 24) -> dict:
    """Write runs/<run_id>/ under `share`; returns the gallery --meta the DAG would pass for it."""
    lay = ShareLayout(Path("."))  # relative to the share, as Jobs see it
    run = share / lay.run(run_id)
    for variant, count in (("main", frames), ("loop", frames // 2)):
        out = run / "frames" / variant
        out.mkdir(parents=True)
        subprocess.run(
            ["ffmpeg", "-loglevel", "error", "-f", "lavfi", "-i", f"testsrc2=size=160x90:rate={fps}",
             "-frames:v", str(count), "-start_number", "1", str(out / "frame_%06d.png")],
            check=True,
        )  # fmt: skip
    scene = run / "scene"
    scene.mkdir()
    wav = scene / f"{song}.wav"
    subprocess.run(["ffmpeg", "-loglevel", "error", "-f", "lavfi", "-i", f"sine=frequency=440:duration={frames / fps}",
                    str(wav)], check=True)  # fmt: skip
    elements = ["marimba_C4", "marimba_E4", "kick"]
    notes = [
        {
            "index": i,
            "track_name": "lead",
            "pitch": 60 + i % 12,
            "time": i * 0.125,
            "element": elements[i % 3],
            "error": (i % 7) * 1e-6,
        }  # fmt: skip
        for i in range(24)
    ]
    report = {"song": song, "fps": fps, "max_timing_error_s": max(n["error"] for n in notes), "notes": notes,
              "strike_visibility": visibility(24, 23), "loop_strike_visibility": visibility(12, 12)}  # fmt: skip
    (scene / "report.json").write_text(json.dumps(report))
    variants, assembled = {}, {}
    for variant, count in (("main", frames), ("loop", frames // 2)):
        res = _run(
            ["-m", "renderlab.jobs.assemble", "--frames", str(lay.frames(run_id, variant)), "--first", "1",
             "--last", str(count), "--fps", str(fps), "--audio", str(lay.scene(run_id) / wav.name),
             "--out", str(lay.video(run_id) / f"{song}_{variant}.mp4"),
             "--contact-sheet", str(lay.video(run_id) / f"{song}_{variant}_contact.png")],
            share,
        )  # fmt: skip
        assembled[variant] = res
        variants[variant] = {"frames": str(lay.frames(run_id, variant)), "first": 1, "last": count, "fps": fps,
                             "video": res["video"]}  # fmt: skip
    spec = {
        "variants": variants,
        "timing_report": str(lay.scene(run_id) / "report.json"),
        "timing_threshold_ms": 41.7,
    }
    verdict = _run(["-m", "renderlab.jobs.validate", "--spec", json.dumps(spec), "--out",
                    str(lay.report(run_id) / "validation.json")], share)  # fmt: skip
    assert verdict["ok"], verdict
    return {
        "run_id": run_id,
        "airflow_run_id": f"manual__{run_id}",
        "song": song,
        "changelist": 7,
        "backend": "local",
        "started": f"2026-01-0{1 + sum(map(ord, run_id)) % 8}T12:00:00+00:00",
        "params": {"preset": "demo", "frames": "all", "fps": fps, "samples": 4, "loop": True},
        "durations": {"fetch": 0.4, "build": 2.5, "render (2 chunks)": 6.0, "assemble": 1.2, "validate": 0.3},
        "variants": {
            k: {key: v[key] for key in ("frames", "fps", "duration_s")} for k, v in assembled.items()
        },
    }
