"""The run output checks `make demo` and `make lab-rehearsal` share (renderlab.workstation.run_outputs), on a
share folder laid out as a finished run leaves it, with real media made by ffmpeg."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from renderlab.base.share import ShareLayout
from renderlab.workstation import run_outputs

RUN, SONG = "manual__2026-12-06T16-00-00-00-00", "tiny"


def _ffmpeg(*args: str) -> None:
    subprocess.run(["ffmpeg", "-v", "error", "-y", *args], check=True, capture_output=True)


@pytest.fixture
def share(tmp_path: Path) -> Path:
    lay = ShareLayout(tmp_path)
    scene, video, report = (Path(p) for p in (lay.scene(RUN), lay.video(RUN), lay.report(RUN)))
    for folder in (scene, video, report, Path(lay.gallery_run(RUN))):
        folder.mkdir(parents=True)
    # Named after the depot's MIDI file (song.mid), as the build names them, and reported with the paths its
    # pod saw.
    for name in ("song.blend", "song_loop.blend"):
        (scene / name).write_bytes(b"BLENDER")
    outputs = {
        k: f"/share/runs/{RUN}/scene/{v}"
        for k, v in (("blend", "song.blend"), ("loop_blend", "song_loop.blend"))
    }
    (scene / "report.json").write_text(json.dumps({"song": "song", "outputs": outputs}))
    mp4 = Path(lay.video_file(RUN, SONG, "main"))
    _ffmpeg("-f", "lavfi", "-i", "testsrc=size=64x36:rate=12:duration=0.5", "-f", "lavfi", "-i",
            "sine=frequency=440:duration=0.5", "-shortest", "-pix_fmt", "yuv420p", str(mp4))  # fmt: skip
    _ffmpeg(
        "-f", "lavfi", "-i", "testsrc=size=64x36", "-frames:v", "1", str(lay.contact_sheet(RUN, SONG, "main"))
    )
    Path(lay.validation_report(RUN)).write_text(json.dumps({"ok": True, "problems": []}))
    # As the Airflow host wrote it: absolute paths under its own mount of the share (not this machine's).
    record = {"state": "success", "song": SONG, "videos": [f"/mnt/render/runs/{RUN}/video/{SONG}_main.mp4"]}
    Path(lay.notification_record(RUN, "success")).write_text(json.dumps(record))
    (Path(lay.gallery_run(RUN)) / "index.html").write_text("<!doctype html>")
    return tmp_path


def test_a_complete_run_has_no_problem(share):
    assert run_outputs.problems(share, RUN) == []


def test_a_video_without_audio_and_a_missing_loop_scene_are_named(share):
    lay = ShareLayout(share)
    mp4 = Path(lay.video_file(RUN, SONG, "main"))
    _ffmpeg("-f", "lavfi", "-i", "testsrc=size=64x36:rate=12:duration=0.5", "-pix_fmt", "yuv420p", str(mp4))
    (Path(lay.scene(RUN)) / "song_loop.blend").unlink()
    (Path(lay.gallery_run(RUN)) / "index.html").unlink()
    sheet = Path(lay.contact_sheet(RUN, SONG, "main"))
    sheet.write_bytes(sheet.read_bytes()[:-20])  # cut short: not a complete PNG
    assert run_outputs.problems(share, RUN) == [
        f"no song_loop.blend in {lay.scene(RUN)}",
        f"{mp4} has streams ['video'], not video and audio",
        f"no complete contact sheet PNG at {sheet}",
        f"no gallery page at {lay.gallery_run(RUN)}/index.html",
    ]


def test_a_failed_validation_is_a_problem(share):
    report = Path(ShareLayout(share).validation_report(RUN))
    report.write_text(json.dumps({"ok": False, "problems": ["main: 3 frames missing"]}))
    (problem,) = run_outputs.problems(share, RUN)
    assert problem.startswith("validation is not ok: ['main: 3 frames missing']")


def test_a_failed_run_says_why(share):
    lay = ShareLayout(share)
    Path(lay.notification_record(RUN, "success")).unlink()
    Path(lay.notification_record(RUN, "failed")).write_text(
        json.dumps({"text": "error in fetch: no such song"})
    )
    (problem,) = run_outputs.problems(share, RUN)
    assert problem.endswith(": error in fetch: no such song") and "has no success record" in problem


def test_a_scene_without_the_builds_report_is_named(share):
    scene = Path(ShareLayout(share).scene(RUN))
    (scene / "report.json").unlink()
    assert run_outputs.problems(share, RUN) == [
        f"no build report naming the scene files in {scene / 'report.json'}"
    ]


def test_a_build_report_that_is_a_link_or_a_device_is_not_read(share, tmp_path):
    # Read from the share: a link out of it (here to a file that would pass) or an endless device is no report.
    scene = Path(ShareLayout(share).scene(RUN))
    real = tmp_path / "elsewhere.json"
    (scene / "report.json").rename(real)
    missing = [f"no build report naming the scene files in {scene / 'report.json'}"]
    for target in (real, Path("/dev/zero")):
        (scene / "report.json").unlink(missing_ok=True)
        (scene / "report.json").symlink_to(target)
        assert run_outputs.problems(share, RUN) == missing
