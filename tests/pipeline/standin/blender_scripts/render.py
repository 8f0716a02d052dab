"""Stand-in `python -m blender_scripts.render --blend F --frames A-B --out DIR ...`: resumable, ffmpeg frames.

A file `.standin-fail-after` holding N in the share root (the Job's working directory) makes it exit 1 after
rendering N frames (once per marker file), to act out a crash.
"""

import argparse
import json
import subprocess
import sys
from pathlib import Path

from renderlab.base.progress import ChunkProgress
from renderlab.base.progress import write as write_progress
from renderlab.base.share import frame_name
from renderlab.jobs.validate import png_size


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--blend", type=Path, required=True)
    ap.add_argument("--frames", required=True)
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--preset", default="demo")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--samples", type=int, default=1)
    ap.add_argument("--resolution-percentage", type=int, default=100)
    # The real entrypoint's progress options: the stand-in writes the same record (no thumbnail, no page).
    ap.add_argument("--variant", default="main")
    ap.add_argument("--progress", type=Path)
    ap.add_argument("--run-frames", type=int)
    ap.add_argument("--live", type=Path)
    ap.add_argument("--title", default="")
    a = ap.parse_args()
    if not a.blend.is_file():
        print(f"render: error: {a.blend} does not exist", file=sys.stderr)
        return 2
    first, last = (int(x) for x in a.frames.split("-"))
    a.out.mkdir(parents=True, exist_ok=True)
    # A Job gets only the environment its spec names (as in a pod), so the crash is ordered through a file
    # in the share (the Job's working directory), not the worker's environment.
    order = Path(".standin-fail-after")
    fail_after = int(order.read_text()) if order.is_file() else 0
    marker = a.out / f".standin-failed-{first}"
    rendered, skipped = [], 0
    for n in range(first, last + 1):
        path = a.out / frame_name(n)
        if png_size(path):
            skipped += 1
            continue
        if fail_after and len(rendered) == fail_after and not marker.exists():
            marker.touch()
            print(f"render: crashed after {fail_after} frames", file=sys.stderr)
            return 1
        tmp = path.with_suffix(".tmp.png")
        src = f"testsrc2=size=64x36:rate=24,trim=start_frame={n}:end_frame={n + 1}"
        subprocess.run(
            ["ffmpeg", "-loglevel", "error", "-y", "-f", "lavfi", "-i", src, "-frames:v", "1", str(tmp)],
            check=True,
        )
        tmp.rename(path)
        rendered.append(n)
        if a.progress is not None:
            done = len(rendered) + skipped
            record = ChunkProgress(
                variant=a.variant,
                first=first,
                last=last,
                done=done,
                run_frames=a.run_frames or last - first + 1,
                newest_frame=n,
                updated="now",
            )
            write_progress(a.progress, record)
        print(f"render: frame {n}", flush=True)
    print(
        json.dumps(
            {
                "frames": [first, last],
                "rendered": len(rendered),
                "rendered_frames": rendered,
                "skipped": skipped,
                "out": str(a.out),
            }
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
