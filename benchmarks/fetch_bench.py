"""Benchmark: unchanged re-fetch vs first fetch of a 500-file / 200 MB file:// project, side by side.

    .venv/bin/python benchmarks/fetch_bench.py [--files 500] [--mb 200] [--dir /tmp]

Both fetches run through the CLI (`python -m renderlab.jobs.fetch`, interpreter start included) and, to show the
fetch's own cost, through the library in this process. Pass: the re-fetch transfers 0 files and takes
<= 0.1 x the first fetch's time (the CLI's reported `seconds`). Exits non-zero when either fails.
The source was just written, so both runs read it from the page cache: this measures the fetch, not the disk.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from renderlab.jobs.fetch.filesync import fetch_folder  # noqa: E402
from renderlab.jobs.fetch.progress import Reporter  # noqa: E402
from renderlab.jobs.fetch.source import FileSource  # noqa: E402


def make_project(root: Path, files: int, total_mb: int, seed: int = 7) -> int:
    """`files` files of varied sizes (a few large audio stems, many small ones) summing to `total_mb` MB."""
    rnd = random.Random(seed)
    weights = [rnd.paretovariate(1.2) for _ in range(files)]
    scale = total_mb * 1_000_000 / sum(weights)
    sizes = [max(1, int(w * scale)) for w in weights]
    sizes[0] += total_mb * 1_000_000 - sum(sizes)
    for i, size in enumerate(sizes):
        path = root / f"part{i % 10}" / f"asset{i:04d}.bin"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(os.urandom(size))
    return sum(sizes)


def cli(src: Path, dest: Path) -> tuple[dict, float]:
    t0 = time.monotonic()
    res = subprocess.run(
        [
            sys.executable,
            "-m",
            "renderlab.jobs.fetch",
            "--quiet",
            "--source",
            f"file://{src}",
            "--dest",
            str(dest),
        ],
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        capture_output=True,
        text=True,
        check=False,
    )
    wall = time.monotonic() - t0
    if res.returncode != 0:
        sys.exit(f"fetch failed ({res.returncode}): {res.stderr.strip()}")
    return json.loads(res.stdout.splitlines()[-1]), wall


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--files", type=int, default=500)
    ap.add_argument("--mb", type=int, default=200)
    ap.add_argument("--dir", default=tempfile.gettempdir(), help="where to put the source and the shares")
    args = ap.parse_args()

    work = Path(tempfile.mkdtemp(prefix="fetch-bench-", dir=args.dir))
    try:
        src = work / "src"
        print(f"creating {args.files} files, {args.mb} MB under {src} ...", file=sys.stderr)
        total = make_project(src, args.files, args.mb)

        first, first_wall = cli(src, work / "share-cli/assets/song")
        again, again_wall = cli(src, work / "share-cli/assets/song")

        quiet = Reporter(quiet=True)
        lib_dest = work / "share-lib/assets/song"
        lib_first = fetch_folder(FileSource(src, None), lib_dest, quiet)
        lib_again = fetch_folder(FileSource(src, None), lib_dest, quiet)

        ratio = again["seconds"] / first["seconds"]
        rows = [
            ("CLI, seconds reported", first["seconds"], again["seconds"]),
            ("CLI, wall incl. interpreter start", first_wall, again_wall),
            ("library, in process", lib_first.seconds, lib_again.seconds),
        ]
        print(f"\nfile:// project: {first['files_total']} files, {total / 1e6:.1f} MB")
        print(f"{'measure':36} {'first fetch':>12} {'re-fetch':>10} {'ratio':>7}")
        for name, a, b in rows:
            print(f"{name:36} {a:>11.3f}s {b:>9.3f}s {b / a:>7.4f}")
        print(
            f"files transferred: first {first['files_transferred']} ({first['bytes_transferred'] / 1e6:.1f} MB), "
            f"re-fetch {again['files_transferred']} ({again['bytes_transferred']} bytes)"
        )
        ok = again["files_transferred"] == 0 and lib_again.files_transferred == 0 and ratio <= 0.1
        print(f"{'PASS' if ok else 'FAIL'}: re-fetch transferred 0 files and ratio {ratio:.4f} <= 0.1")
        return 0 if ok else 1
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
