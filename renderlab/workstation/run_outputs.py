"""What a finished render run must have left on the share, checked from this machine: the checks `make demo`
and `make lab-rehearsal` share. Read from the share's own layout (renderlab/base/share.py), never from paths a
record names (those are as the Airflow host saw the share, which may be mounted elsewhere there).

A run is good when its success notification is recorded, validation said ok, the scene's .blend files the build
reported (the song's and the loop's) are there, and each rendered variant has an MP4 with a video and an audio stream, a
contact sheet, and the run's gallery page.
"""

from __future__ import annotations

import json
import os
import stat
import subprocess
from pathlib import Path, PurePosixPath
from typing import Any

from renderlab.base import png
from renderlab.base.share import ShareLayout

MAX_JSON_BYTES = 16 * 1024 * 1024  # a build report lists every note: a few MiB for a long song


def _json(path: Path) -> dict[str, Any] | None:
    """A JSON object from the share, or None: read only as a regular file reached without a link, bounded."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except OSError:
        return None
    with open(fd, "rb") as f:
        if not stat.S_ISREG(os.fstat(f.fileno()).st_mode):
            return None
        data = f.read(MAX_JSON_BYTES + 1)
    if len(data) > MAX_JSON_BYTES:
        return None
    try:
        value = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError):
        return None
    return value if isinstance(value, dict) else None


def failure(share: Path, run_id: str) -> str | None:
    """The run's failure notification text, if it recorded one."""
    record = _json(Path(ShareLayout(share).notification_record(run_id, "failed")))
    return str(record.get("text")) if record else None


def streams(video: Path) -> set[str]:
    """The kinds of stream in a media file ('video', 'audio'), as ffprobe reads it; empty if it cannot."""
    proc = subprocess.run(
        ["ffprobe", "-v", "error", "-show_streams", "-of", "json", str(video)],
        capture_output=True, text=True, check=False, timeout=60,
    )  # fmt: skip
    try:
        return {s.get("codec_type") for s in json.loads(proc.stdout or "{}").get("streams", [])}
    except json.JSONDecodeError:
        return set()


def problems(share: Path, run_id: str) -> list[str]:
    """Every missing or bad output of the run, one line each (empty: the run is good)."""
    lay = ShareLayout(share)
    record = _json(Path(lay.notification_record(run_id, "success")))
    if record is None:
        why = failure(share, run_id) or "no notification record at all"
        return [f"run {run_id} has no success record ({lay.notification_record(run_id, 'success')}): {why}"]
    found = []
    validation = _json(Path(lay.validation_report(run_id)))
    if not validation or validation.get("ok") is not True:
        found.append(
            f"validation is not ok: {(validation or {}).get('problems') or 'no report'} ({lay.validation_report(run_id)})"
        )
    song = str(record.get("song"))
    scene = Path(lay.scene(run_id))
    blends = {p.name for p in scene.glob("*.blend")} if scene.is_dir() else set()
    # The files the build reported (named after the depot's MIDI file, not the song): only their names are
    # taken, looked for in this run's scene folder (the paths are as the build's pod saw the share).
    outputs = (_json(scene / "report.json") or {}).get("outputs")
    if not isinstance(outputs, dict):
        found.append(f"no build report naming the scene files in {scene / 'report.json'}")
        outputs = {}
    for key in ("blend", "loop_blend"):
        name = PurePosixPath(str(outputs.get(key) or "")).name
        if name and (not name.endswith(".blend") or name not in blends):
            found.append(f"no {name} in {scene}")
    variants = sorted(Path(p).stem.removeprefix(f"{song}_") for p in record.get("videos") or [])
    if not variants:
        found.append("the success record names no video")
    for variant in variants:
        video = Path(lay.video_file(run_id, song, variant))
        kinds = streams(video) if video.is_file() else set()
        if not {"video", "audio"} <= kinds:
            found.append(f"{video} has streams {sorted(kinds) or 'none'}, not video and audio")
        sheet = Path(lay.contact_sheet(run_id, song, variant))
        if not sheet.is_file() or png.size(sheet) is None:
            found.append(f"no complete contact sheet PNG at {sheet}")
    page = Path(lay.gallery_run(run_id)) / "index.html"
    if not page.is_file():
        found.append(f"no gallery page at {page}")
    return found
