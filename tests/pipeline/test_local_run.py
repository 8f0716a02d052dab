"""The DAG end to end in real Airflow (dag.test) with the local backend and the contract stand-in for
blender_scripts: the pipeline's own plumbing (chunks, retries, assemble, validate, notify, failure paths).
The same flows with real Blender are in test_blender_e2e.py."""

from __future__ import annotations

import json
import re
from urllib.parse import quote

import pytest

from tests.pipeline.conftest import STANDIN, run_dag
from tests.pipeline.media import stream_durations

STANDIN_SETTINGS = {"python_path": [str(STANDIN)], "fps": 24}

pytestmark = [pytest.mark.slow, pytest.mark.airflow]


def test_success_outputs_and_notification(airflow_home, depot, tmp_path, receiver):
    share = tmp_path / "share"
    r = run_dag(
        airflow_home,
        share,
        depot,
        {"song": "tiny", "frames_per_chunk": 10, "loop": True, "notify": "webhook"},
        settings=STANDIN_SETTINGS,
        extra_env={"AIRFLOW_CONN_RENDERLAB_NOTIFY": receiver.url},
    )
    assert r["state"] == "success", r["log"][-3000:]
    # 24 main frames in chunks of 10 and 12 loop frames: readable map indexes.
    labels = sorted(t["label"] for k, t in r["tis"].items() if k.startswith("render_chunk"))
    assert labels == [
        "frames 1-10",
        "frames 1-10 (loop)",
        "frames 11-12 (loop)",
        "frames 11-20",
        "frames 21-24",
    ]
    (run_dir,) = (share / "runs").iterdir()
    main = run_dir / "video" / "tiny_main.mp4"
    streams = stream_durations(main)
    assert set(streams) == {"video", "audio"}
    assert streams["video"] == pytest.approx(1.0, abs=0.05)  # 24 frames at 24 fps
    assert streams["audio"] == pytest.approx(1.0, abs=0.05)
    assert stream_durations(run_dir / "video" / "tiny_loop.mp4")["video"] == pytest.approx(0.5, abs=0.05)
    for name in ("tiny_main_contact.png", "tiny_loop_contact.png"):
        assert (run_dir / "video" / name).stat().st_size > 0
    assert json.loads((run_dir / "report" / "validation.json").read_text())["ok"] is True
    # Exactly one notification, delivered to the receiver and recorded under the run folder.
    assert len(receiver.bodies) == 1
    body = receiver.bodies[0]
    assert body["state"] == "success" and body["run_folder"] == str(run_dir)
    assert str(main) in body["videos"]
    record = json.loads((run_dir / "report" / "notification-success.json").read_text())
    assert record["notification"]["delivered"] is True
    assert receiver.url not in json.dumps(record)  # the webhook URL is a secret
    # The gallery Job published the run's page (both videos, the verdict) and the notification links it.
    page = share / "gallery" / "runs" / run_dir.name / "index.html"
    assert body["gallery_page"] == str(page)
    html = page.read_text()
    assert 'src="media/tiny_main.mp4"' in html and 'src="media/tiny_loop.mp4"' in html and "passed" in html
    assert f'href="runs/{quote(run_dir.name)}/index.html"' in (share / "gallery" / "index.html").read_text()
    published = json.loads((page.parent / "run.json").read_text())
    assert set(published["variants"]) == {"main", "loop"}
    assert isinstance(published["changelist"], int)  # "latest" as the fetch resolved it
    assert set(published) >= {"started", "ok", "variants"} and published["ok"] is True


def test_render_false_builds_only(airflow_home, depot, tmp_path):
    share = tmp_path / "share"
    r = run_dag(
        airflow_home,
        share,
        depot,
        {"song": "tiny", "render": False},
        settings=STANDIN_SETTINGS,
    )
    assert r["state"] == "success", r["log"][-3000:]
    (run_dir,) = (share / "runs").iterdir()
    assert (
        run_dir / "scene" / "song.blend"
    ).is_file()  # named after the MIDI file, as the real build names it
    assert not (run_dir / "frames").exists() and not (run_dir / "video").exists()
    # A build-only run still gets its page (scene and timing, no video).
    page = (share / "gallery" / "runs" / run_dir.name / "index.html").read_text()
    assert "rendered no video" in page and "<video" not in page


def test_crashed_chunk_retry_renders_only_missing_frames(airflow_home, depot, tmp_path):
    share = tmp_path / "share"
    share.mkdir()
    (share / ".standin-fail-after").write_text("7")  # read by the stand-in render in its working directory
    r = run_dag(
        airflow_home,
        share,
        depot,
        {"song": "tiny", "frames_per_chunk": 24},
        settings=STANDIN_SETTINGS,
    )
    assert r["state"] == "success", r["log"][-3000:]
    chunk = r["tis"]["render_chunk[0]"]
    assert chunk["try_number"] == 2  # the first try crashed after 7 frames, the retry finished
    results = [json.loads(m) for m in re.findall(r"\[render-main-1-24\] (\{.*?\}) +\[renderlab", r["log"])]
    assert results[-1]["rendered"] == 17 and results[-1]["skipped"] == 7
    assert results[-1]["rendered_frames"] == list(range(8, 25))


def test_failing_task_notifies_and_publishes_nothing(airflow_home, depot, tmp_path, receiver):
    share = tmp_path / "share"
    r = run_dag(
        airflow_home,
        share,
        depot,
        {"song": "nosuchsong", "notify": "slack"},
        settings=STANDIN_SETTINGS,
        extra_env={"AIRFLOW_CONN_RENDERLAB_NOTIFY": receiver.url},
    )
    assert r["state"] == "failed"
    assert r["tis"]["fetch"]["state"] == "failed" and r["tis"]["build"]["state"] == "upstream_failed"
    # Slack-compatible body: one text field naming the failed task and the entrypoint's own error.
    assert len(receiver.bodies) == 1
    text = receiver.bodies[0]["text"]
    assert "FAILED" in text and "error in fetch" in text and "nosuchsong" in text
    (run_dir,) = (share / "runs").iterdir()
    assert sorted(p.name for p in run_dir.iterdir()) == ["report"]
    assert not (share / "gallery").exists()  # a failed run publishes no page
    record = json.loads((run_dir / "report" / "notification-failed.json").read_text())
    assert record["failed_task"] == "fetch" and record["notification"]["delivered"] is True
    # Nothing half-written: no temp files anywhere on the share.
    assert not [p for p in share.rglob("*") if ".tmp" in p.name]


BAD_PARAMS = [
    ({"song": "tiny", "preset": "8k"}, "8k"),
    ({"song": "../etc"}, "does not match"),
    ({"song": "tiny", "frames": "ten"}, "does not match"),
    ({"song": "tiny", "frames": "0-0"}, "does not match"),  # frame 0 is no frame
    ({"song": "tiny\n"}, "does not match"),  # '$' alone let a final newline through
    ({"song": "tiny", "changelist": 0}, "changelist"),
    ({"song": "tiny", "samples": 0}, "minimum"),
    ({"song": "tiny", "loop": "yes"}, "boolean"),
]


def test_bad_params_are_refused_at_trigger(airflow_home, depot, tmp_path):
    share = tmp_path / "share"
    results = run_dag(airflow_home, share, depot, [c for c, _ in BAD_PARAMS], settings=STANDIN_SETTINGS)
    for (conf, needle), r in zip(BAD_PARAMS, results, strict=True):
        assert r["state"] == "refused", conf
        assert "ParamValidationError" in r["error"] and needle in r["error"], (conf, r["error"])
    assert not share.exists()  # refused before any task ran: nothing written
