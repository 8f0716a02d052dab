"""The local embedded default (`make demo`): the real render DAG in real Airflow on this machine.

Airflow runs from a private AIRFLOW_HOME (SQLite, examples off, parallelism capped), the DAG runs with
``airflow dags test`` (in-process: no scheduler or API server is left behind), the backend is `local` and
the share is a folder under ``out/``. The song comes from the repo's file:// depot (``depot/songs``).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

from renderlab.base import cli, process_group
from renderlab.base.share import ShareLayout
from renderlab.pipeline.depot_songs import DEFAULT_SONG
from renderlab.workstation import run_outputs

REPO = Path(__file__).resolve().parents[2]
DEFAULTS = {
    # Kept small so that the whole demo, setup included, fits in ~10 minutes on 2 cores: 3.2 s of the
    # song at 30 fps, demo preset at half size (320x180), 4 Cycles samples.
    "frames": "1-96",
    "fps": 30,
    "samples": 4,
    "resolution_percentage": 50,
    "frames_per_chunk": 48,
}


def demo_song(depot: Path, wanted: str | None) -> str:
    songs = sorted(p.parent.name for p in depot.glob("*/song.mid"))
    if wanted:
        if wanted not in songs:
            raise SystemExit(
                f"demo: song {wanted!r} is not in {depot} (has: {', '.join(songs) or 'none'}); "
                "pass --song with one of those"
            )
        return wanted
    if not songs:
        raise SystemExit(
            f"demo: no song projects in {depot} (expected <project>/song.mid); the bundled demo songs come "
            "with blender_scripts"
        )
    return DEFAULT_SONG if DEFAULT_SONG in songs else songs[0]


def airflow_env(home: Path, share: Path, depot: Path, extra: dict | None = None) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        {
            "AIRFLOW_HOME": str(home),
            "AIRFLOW__CORE__DAGS_FOLDER": str(REPO / "dags"),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "AIRFLOW__CORE__PARALLELISM": "2",
            "AIRFLOW__CORE__MAX_ACTIVE_TASKS_PER_DAG": "2",
            "AIRFLOW__CORE__EXECUTOR": "LocalExecutor",
            "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{home / 'airflow.db'}",
            "AIRFLOW__LOGGING__LOGGING_LEVEL": "INFO",
            "PYTHONPATH": os.pathsep.join(p for p in (str(REPO), os.environ.get("PYTHONPATH", "")) if p),
            "AIRFLOW_VAR_RENDERLAB": json.dumps(
                {"backend": "local", "share_root": str(share), "depot": f"file://{depot}", **(extra or {})}
            ),
        }
    )
    return env


def _run(cmd: list[str], env: dict[str, str], log_path: Path, echo: bool) -> int:
    """Run in its own process group; stream to the log file (and the terminal); kill the group on exit."""
    with log_path.open("a", encoding="utf-8") as log:
        proc = subprocess.Popen(
            cmd,
            env=env,
            cwd=REPO,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,
        )
        try:
            assert proc.stdout is not None
            for line in proc.stdout:
                log.write(line)
                if echo and _interesting(line):
                    print("  " + line.rstrip()[:200], flush=True)
            return proc.wait()
        finally:
            _reap(proc)


def _interesting(line: str) -> bool:
    keys = ("[DAG TEST] end task", "job ", "render: ", "Marking run", "notification", "ERROR", "error:")
    return any(k in line for k in keys)


def _reap(proc: subprocess.Popen) -> None:
    """Leave nothing running: the whole process group, then any stray descendants."""
    process_group.stop(proc, grace=5, descendants=True)


def run(argv: list[str] | None = None) -> int:

    from renderlab.base import cli
    from renderlab.pipeline.steps import SONG_PATTERN

    ap = cli.Parser(prog="python -m renderlab.workstation.demo", description=__doc__.split("\n")[0])
    ap.add_argument("--song", help="song project in the depot (default: the bundled demo song)")
    ap.add_argument("--frames", default=DEFAULTS["frames"], help='"all" or A-B (default %(default)s)')
    ap.add_argument("--samples", type=int, default=DEFAULTS["samples"])
    ap.add_argument("--fps", type=int, default=DEFAULTS["fps"])
    ap.add_argument("--resolution-percentage", type=int, default=DEFAULTS["resolution_percentage"])
    ap.add_argument("--frames-per-chunk", type=int, default=DEFAULTS["frames_per_chunk"])
    ap.add_argument("--loop", action="store_true", help="also render the loop version")
    ap.add_argument("--out", type=Path, default=REPO / "out" / "demo", help="share folder (default out/demo)")
    ap.add_argument("--depot", type=Path, default=REPO / "depot" / "songs")
    ap.add_argument("--python-path", action="append", default=[], help="extra import path for the Jobs")
    ap.add_argument("--airflow-home", type=Path, default=REPO / ".cache" / "airflow-demo")
    ap.add_argument("--no-look", dest="look", action="store_false", help="skip the look check contact sheet")
    a = ap.parse_args(argv)
    # The DAG's Params refuse the same values, but only after Airflow has started: say it now, in one line.
    if not re.fullmatch(r"all|[0-9]{1,6}-[0-9]{1,6}", a.frames):
        ap.error(f"--frames {a.frames!r} is not 'all' or A-B, e.g. 1-240")
    if a.song is not None and not re.search(SONG_PATTERN, a.song):
        ap.error(f"--song {a.song!r} is not a project name (letters, digits, _.+-, no '..')")
    for flag, value, lo, hi in (("--samples", a.samples, 1, 65536), ("--fps", a.fps, 1, 240),
                                ("--resolution-percentage", a.resolution_percentage, 1, 100),
                                ("--frames-per-chunk", a.frames_per_chunk, 1, 100000)):  # fmt: skip
        if not lo <= value <= hi:
            ap.error(f"{flag} {value} is out of range; use {lo}..{hi}")

    start = time.monotonic()
    home = a.airflow_home.resolve()
    home.mkdir(parents=True, exist_ok=True)
    share = a.out.resolve()
    share.mkdir(parents=True, exist_ok=True)
    song = demo_song(a.depot.resolve(), a.song)
    extra = {"python_path": [str(Path(p).resolve()) for p in a.python_path], "fps": a.fps}
    env = airflow_env(home, share, a.depot.resolve(), extra)
    airflow = str(Path(sys.executable).with_name("airflow"))
    if shutil.which(airflow) is None:
        raise SystemExit(f"demo: {airflow} not found; run `make venv` first")
    log_path = share / "demo-airflow.log"
    print(f"demo: Airflow home {home} (SQLite), share {share}, song {song}; log {log_path}", flush=True)
    print("demo: preparing the Airflow database ...", flush=True)
    if _run([airflow, "db", "migrate"], env, log_path, echo=False) != 0:
        print(f"demo: `airflow db migrate` failed; see {log_path}", file=sys.stderr)
        return 1
    conf = {
        "song": song,
        "preset": "demo",
        "frames": a.frames,
        "samples": a.samples,
        "resolution_percentage": a.resolution_percentage,
        "frames_per_chunk": a.frames_per_chunk,
        "loop": a.loop,
        "notify": "none",
    }
    print(f"demo: running the render DAG: {json.dumps(conf)}", flush=True)
    runs_dir = Path(ShareLayout(share).runs())
    before = set(runs_dir.glob("*")) if runs_dir.is_dir() else set()
    code = _run([airflow, "dags", "test", "render", "--conf", json.dumps(conf)], env, log_path, echo=True)
    runs = sorted(set(runs_dir.glob("*")) - before, key=lambda p: p.stat().st_mtime)
    if not runs:
        print(f"demo: the DAG run left no run folder (exit {code}); see {log_path}", file=sys.stderr)
        return 1
    run_dir = runs[-1]
    layout = ShareLayout(share)
    ok = Path(layout.notification_record(run_dir.name, "success")).is_file()
    elapsed = time.monotonic() - start
    if not ok:
        detail = run_outputs.failure(share, run_dir.name) or f"see {log_path}"
        print(f"demo: FAILED after {elapsed:.0f}s: {detail}", file=sys.stderr)
        return 1
    # The same checks as the lab rehearsal's: .blend files, MP4s with audio, contact sheets, validation, page.
    missing = run_outputs.problems(share, run_dir.name)
    if missing:
        print(f"demo: FAILED after {elapsed:.0f}s: the run's outputs are incomplete:", file=sys.stderr)
        for line in missing:
            print(f"  {line}", file=sys.stderr)
        return 1
    print(f"demo: done in {elapsed:.0f}s. Outputs (.blend, MP4 with audio, contact sheet, timing report):")
    for path in sorted(run_dir.rglob("*")):
        if (
            path.is_file()
            and path.suffix in {".blend", ".mp4", ".png", ".json", ".wav"}
            and "frames" not in path.parts
        ):
            print(f"  {path.relative_to(run_dir)}")
    page = share / "gallery" / "runs" / run_dir.name / "index.html"
    if page.is_file():
        print(f"demo: gallery page {page}")
        print(f"demo: `make docs` serves it at http://127.0.0.1:<port>/gallery/runs/{run_dir.name}/")
    if a.look and not _look(run_dir, env, log_path):
        return 1
    print(run_dir)
    return 0


def _look(run_dir: Path, env: dict[str, str], log_path: Path) -> bool:
    """The look check (blender_scripts.look): six frames at fixed song positions in one sheet."""
    blends = [p for p in sorted((run_dir / "scene").glob("*.blend")) if not p.stem.endswith("_loop")]
    if not blends:
        print(f"demo: no main .blend under {run_dir / 'scene'} for the look check", file=sys.stderr)
        return False
    sheet = run_dir / "video" / "look.png"
    print(f"demo: look check (6 frames at fixed song positions, demo preset) -> {sheet}", flush=True)
    cmd = [sys.executable, "-m", "blender_scripts.look", "--blend", str(blends[0]), "--out", str(sheet),
           "--samples", "8", "--resolution-percentage", "50"]  # fmt: skip
    if _run(cmd, {**env, "PYTHONPATH": str(REPO)}, log_path, echo=False) != 0:
        print(f"demo: the look check failed; see {log_path}", file=sys.stderr)
        return False
    print(f"  video/{sheet.name}  (look check)")
    return True


@cli.command("demo")
def main(argv: list[str] | None = None) -> int:
    try:
        return run(argv)
    except SystemExit as e:  # the demo's own refusals are `SystemExit("demo: ...")`: one line, status 1
        if isinstance(e.code, str):
            print(e.code if e.code.startswith("demo: error:") else e.code.replace("demo: ", "demo: error: ", 1),
                  file=sys.stderr)  # fmt: skip
            return 1
        raise


if __name__ == "__main__":
    sys.exit(main())
