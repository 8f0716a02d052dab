"""Stand-in `python -m blender_scripts.build --midi SONG.mid --out DIR` (contract shape, ffmpeg audio)."""

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

FPS = int(os.environ.get("STANDIN_FPS", "24"))
FRAMES = int(os.environ.get("STANDIN_FRAMES", "24"))


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--midi", type=Path, required=True)
    ap.add_argument("--arrangement", type=Path)
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--fps", type=int, default=FPS)
    a = ap.parse_args()
    if not a.midi.is_file():
        print(f"build: error: MIDI file {a.midi} does not exist", file=sys.stderr)
        return 2
    song = a.midi.stem  # as the real build names its files: after the MIDI file (the depot's song.mid)
    a.out.mkdir(parents=True, exist_ok=True)
    for name in (f"{song}.blend", f"{song}_loop.blend"):
        (a.out / name).write_bytes(b"standin blend")
    wav = a.out / f"{song}.wav"
    subprocess.run(
        [
            "ffmpeg",
            "-loglevel",
            "error",
            "-y",
            "-f",
            "lavfi",
            "-i",
            f"sine=frequency=440:duration={FRAMES / a.fps}",
            str(wav),
        ],
        check=True,
    )
    report = a.out / "report.json"
    result = {
        "blend": str(a.out / f"{song}.blend"),
        "loop_blend": str(a.out / f"{song}_loop.blend"),
        "wav": str(wav),
        "report": str(report),
        "notes": 3,
        "frames": [1, FRAMES],
        "loop_frames": [1, FRAMES // 2],
        "fps": a.fps,
        "duration_s": FRAMES / a.fps,
    }
    report.write_text(json.dumps({"max_timing_error_s": 0.0005, "outputs": result}))
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
