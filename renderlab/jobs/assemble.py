"""Assemble a rendered frame sequence into an MP4 with the song's audio, plus a contact sheet.

Runs as a Job in the Blender image (it has ffmpeg) with the share as its working directory:

    python -m renderlab.jobs.assemble --frames DIR --first 1 --last 240 --fps 60 --audio song.wav \
        --audio-offset 0 --out video/main.mp4 --contact-sheet video/main_contact.png

Both outputs are written under temp names and renamed; prints one JSON result line last.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

from renderlab.base import atomic, cli
from renderlab.base.share import FRAME_PATTERN, frame_name

MAX_FRAMES = 1_000_000  # one video: 4.6 hours at 60 fps


class AssembleError(RuntimeError):
    pass


def _ffmpeg(args: list[str]) -> None:
    if shutil.which("ffmpeg") is None:
        raise AssembleError("ffmpeg is not on PATH; install it (Debian: apt-get install ffmpeg)")
    cmd = ["ffmpeg", "-hide_banner", "-loglevel", "error", "-nostdin", "-y", *args]
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise AssembleError(f"ffmpeg failed ({proc.returncode}): {proc.stderr.strip()[-2000:]}")


def missing_frames(frames: Path, first: int, last: int) -> list[int]:
    return [n for n in range(first, last + 1) if not (frames / frame_name(n)).is_file()]


def assemble(
    frames: Path,
    first: int,
    last: int,
    *,
    fps: int,
    out: Path,
    audio: Path | None = None,
    audio_offset: float = 0.0,
    contact_sheet: Path | None = None,
    columns: int = 6,
) -> dict:
    start = time.monotonic()
    if last < first:
        raise AssembleError(f"--last {last} is before --first {first}")
    missing = missing_frames(frames, first, last)
    if missing:
        shown = ", ".join(map(str, missing[:10]))
        raise AssembleError(
            f"{len(missing)} frame(s) missing in {frames} (e.g. {shown}); re-run the render chunks first"
        )
    if audio is not None and not audio.is_file():
        raise AssembleError(f"audio file {audio} does not exist; run the build step first")
    count = last - first + 1
    duration = count / fps
    seq = ["-framerate", str(fps), "-start_number", str(first), "-i", str(frames / FRAME_PATTERN)]
    args = list(seq)
    if audio is not None:
        args += ["-ss", f"{audio_offset:.6f}", "-i", str(audio)]
    args += ["-t", f"{duration:.6f}", "-c:v", "libx264", "-preset", "veryfast", "-crf", "20"]
    args += ["-pix_fmt", "yuv420p", "-vf", "pad=ceil(iw/2)*2:ceil(ih/2)*2", "-threads", "2"]
    if audio is not None:
        # Pad or cut the audio to exactly the video's length.
        args += ["-c:a", "aac", "-b:a", "192k", "-af", "apad"]
    args += ["-movflags", "+faststart", "-f", "mp4"]
    with atomic.target(out) as tmp:
        _ffmpeg([*args, str(tmp)])
    result = {"video": str(out), "frames": count, "fps": fps, "duration_s": round(duration, 6)}
    if contact_sheet is not None:
        rows = max(1, min(6, -(-count // columns)))
        step = max(1, count // (columns * rows))
        vf = f"select='not(mod(n\\,{step}))',scale=320:-2,tile={columns}x{rows}"
        with atomic.target(contact_sheet) as tmp:
            _ffmpeg([*seq, "-vf", vf, "-frames:v", "1", "-f", "image2", "-c:v", "png", str(tmp)])
        result["contact_sheet"] = str(contact_sheet)
    result["seconds"] = round(time.monotonic() - start, 3)
    return result


def build_parser() -> cli.Parser:
    ap = cli.Parser(prog="python -m renderlab.jobs.assemble", description=__doc__.split("\n")[0])
    ap.add_argument("--frames", type=Path, required=True, help="folder with frame_%%06d.png")
    ap.add_argument("--first", type=int, required=True)
    ap.add_argument("--last", type=int, required=True)
    ap.add_argument("--fps", type=int, required=True)
    ap.add_argument("--audio", type=Path)
    ap.add_argument("--audio-offset", type=float, default=0.0, help="seconds into the audio of --first")
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--contact-sheet", type=Path)
    return ap


def main(argv: list[str] | None = None) -> int:
    a = build_parser().parse_args(argv)
    if not 1 <= a.fps <= 240:
        build_parser().error(f"--fps {a.fps} is out of range; use 1..240")
    if a.first < 0 or a.last - a.first + 1 > MAX_FRAMES:
        build_parser().error(
            f"--first {a.first} --last {a.last}: give 0 <= FIRST and at most {MAX_FRAMES} frames"
        )
    try:
        result = assemble(
            a.frames,
            a.first,
            a.last,
            fps=a.fps,
            out=a.out,
            audio=a.audio,
            audio_offset=a.audio_offset,
            contact_sheet=a.contact_sheet,
        )
    except AssembleError as e:
        print(f"assemble: error: {cli.one_line(e)}", file=sys.stderr)
        return 1
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(cli.guard("assemble", main))
