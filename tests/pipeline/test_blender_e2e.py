"""The DAG end to end with the real blender_scripts (bpy, Cycles on the CPU) on a tiny render: the real
fetch from the repo's file:// depot, the real scene build, real frame chunks, assemble, validate, notify.
And the fault case: a render chunk killed mid-way is retried and renders only the missing frames."""

from __future__ import annotations

import importlib.util
import json
import re
import signal
import subprocess
import threading
import time

import psutil
import pytest

from tests.pipeline.conftest import REPO, run_dag
from tests.pipeline.media import stream_durations

pytestmark = [
    pytest.mark.slow,
    pytest.mark.airflow,
    pytest.mark.bpy,
    pytest.mark.skipif(
        importlib.util.find_spec("blender_scripts.render") is None or importlib.util.find_spec("bpy") is None,
        reason="needs blender_scripts (build + render) and the bpy wheel",
    ),
]

DEPOT = REPO / "depot" / "songs"
SONG = "ode_waltz"
FIRST, LAST = 25, 36  # 12 frames at 24 fps = 0.5 s, 64x36 pixels, 1 sample
SETTINGS = {"fps": 24}


def conf(**extra) -> dict:
    return {
        "song": SONG,
        "frames": f"{FIRST}-{LAST}",
        "samples": 1,
        "resolution_percentage": 10,
        "frames_per_chunk": 6,
        **extra,
    }


def frame_hashes(path) -> list[str]:
    """The decoded video frames' MD5s: equal when two videos show exactly the same pictures."""
    out = subprocess.run(
        ["ffmpeg", "-v", "error", "-i", str(path), "-map", "0:v", "-f", "framemd5", "-"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return [line.rsplit(",", 1)[1].strip() for line in out.splitlines() if line and not line.startswith("#")]


@pytest.fixture(scope="module")
def clean_run(airflow_home, tmp_path_factory):
    from tests.pipeline.conftest import Receiver

    share = tmp_path_factory.mktemp("share-clean")
    receiver = Receiver()
    try:
        started = time.monotonic()
        r = run_dag(
            airflow_home,
            share,
            DEPOT,
            conf(notify="webhook"),
            settings=SETTINGS,
            extra_env={"AIRFLOW_CONN_RENDERLAB_NOTIFY": receiver.url},
        )
        r["seconds"] = time.monotonic() - started
        r["bodies"] = list(receiver.bodies)
    finally:
        receiver.close()
    assert r["state"] == "success", r["log"][-4000:]
    (run_dir,) = (share / "runs").iterdir()
    return r, run_dir


def test_tiny_render_end_to_end(clean_run):
    r, run_dir = clean_run
    labels = sorted(t["label"] for k, t in r["tis"].items() if k.startswith("render_chunk"))
    assert labels == ["frames 25-30", "frames 31-36"]
    scene = run_dir / "scene"
    assert (scene / "song.blend").is_file() and (scene / "song_loop.blend").is_file()
    report = json.loads((scene / "report.json").read_text())
    assert report["fps"] == 24
    video = run_dir / "video" / f"{SONG}_main.mp4"
    got = stream_durations(video)
    assert set(got) == {"video", "audio"}
    assert got["video"] == pytest.approx(12 / 24, abs=0.05)
    assert got["audio"] == pytest.approx(12 / 24, abs=0.05)
    assert (run_dir / "video" / f"{SONG}_main_contact.png").stat().st_size > 0
    validation = json.loads((run_dir / "report" / "validation.json").read_text())
    assert validation["ok"] is True and validation["timing"]["max_error_ms"] <= 1000 / 24
    assert len(r["bodies"]) == 1 and r["bodies"][0]["state"] == "success"
    assert str(video) in r["bodies"][0]["videos"]
    assert not [p for p in run_dir.rglob("*") if ".tmp" in p.name]


class ChunkKiller(threading.Thread):
    """Kills the render Job's processes (SIGKILL, like a lost node) once `after` frames are on the share."""

    def __init__(self, share, after: int):
        super().__init__(daemon=True)
        self.share, self.after = share, after
        self.snapshot: dict[str, tuple[int, int]] = {}
        self.killed: list[int] = []
        self.stop = threading.Event()

    def _frames(self):
        return sorted(self.share.glob("runs/*/frames/main/frame_*.png"))

    def run(self):
        while not self.stop.is_set() and not self.killed:
            if len(self._frames()) >= self.after:
                victims = []
                for p in psutil.process_iter(["cmdline", "cwd"]):
                    cmd = " ".join(p.info["cmdline"] or [])
                    if "blender_scripts.render" in cmd and p.info["cwd"] == str(self.share):
                        victims.append(p)
                for p in victims:
                    p.send_signal(signal.SIGKILL)
                    self.killed.append(p.pid)
                self.snapshot = {f.name: (f.stat().st_ino, f.stat().st_mtime_ns) for f in self._frames()}
            time.sleep(0.02)


def test_killed_chunk_retry_renders_only_missing_frames(airflow_home, tmp_path, clean_run):
    share = tmp_path / "share"
    share.mkdir()
    killer = ChunkKiller(share, after=3)
    killer.start()
    try:
        r = run_dag(airflow_home, share, DEPOT, conf(frames_per_chunk=12), settings=SETTINGS)
    finally:
        killer.stop.set()
        killer.join(5)
    assert killer.killed, "the render finished before it could be killed"
    assert r["state"] == "success", r["log"][-4000:]
    assert r["tis"]["render_chunk[0]"]["try_number"] == 2
    done_before = len(killer.snapshot)
    assert 3 <= done_before < 12
    # The retry rendered only the missing frames; the ones already there were not touched.
    results = [json.loads(m) for m in re.findall(r"\[render-main-25-36\] (\{.*?\}) +\[renderlab", r["log"])]
    assert results[-1]["skipped"] == done_before and results[-1]["rendered"] == 12 - done_before
    (run_dir,) = (share / "runs").iterdir()
    for name, ident in killer.snapshot.items():
        f = run_dir / "frames" / "main" / name
        assert (f.stat().st_ino, f.stat().st_mtime_ns) == ident, name
    # Same pictures as the uninterrupted run.
    _, clean_dir = clean_run
    assert frame_hashes(run_dir / "video" / f"{SONG}_main.mp4") == frame_hashes(
        clean_dir / "video" / f"{SONG}_main.mp4"
    )
