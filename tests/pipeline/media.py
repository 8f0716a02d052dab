"""ffprobe, called directly so the tests check videos independently of renderlab.jobs.validate."""

from __future__ import annotations

import json
import subprocess


def stream_durations(path) -> dict[str, float]:
    """Seconds per stream kind ('video', 'audio') of a media file."""
    out = subprocess.run(
        ["ffprobe", "-v", "error", "-show_streams", "-of", "json", str(path)],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return {s["codec_type"]: float(s["duration"]) for s in json.loads(out)["streams"]}
