"""The pipeline's own steps and helpers: chunk planning, sources, settings, assemble/validate entrypoints,
notifications (the images' inputs: tests/containers)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from threading import Thread

import pytest

from renderlab.jobs import assemble, validate
from renderlab.jobs.build_step import build_argv
from renderlab.pipeline import notify, run_plan, settings
from renderlab.pipeline import steps as pipeline
from renderlab.pipeline.settings import Settings
from tests.pipeline.conftest import REPO

BUILT = {"blend": "s.blend", "loop_blend": "l.blend", "frames": [1, 100], "loop_frames": [1, 60]}
LOCAL = Settings(backend="local", depot="file:///d/songs", share_root="/tmp/share", frames_per_chunk=48)


def plan(**params) -> dict:
    """The run plan the DAG's first task would hand on (as XCom JSON) for these params."""
    context = {"params": {"song": "s", **params}, "run_id": "manual__2026-01-01T00:00:00+00:00"}
    return run_plan.resolve_run(context, LOCAL).xcom()


def test_chunks_cover_the_range_exactly():
    chunks = pipeline.chunks(plan(), BUILT)
    assert [(c["first"], c["last"]) for c in chunks] == [(1, 48), (49, 96), (97, 100)]
    assert chunks[0]["label"] == "frames 1-48"
    sub = pipeline.chunks(plan(frames="90-500", loop=True, frames_per_chunk=40), BUILT)
    assert [(c["variant"], c["first"], c["last"]) for c in sub] == [
        ("main", 90, 100),
        ("loop", 1, 40),
        ("loop", 41, 60),
    ]
    assert pipeline.chunks(plan(render=False), BUILT) == []
    with pytest.raises(ValueError, match="outside the song's frames 1-100"):
        pipeline.chunks(plan(frames="200-300"), BUILT)
    with pytest.raises(ValueError, match="the first frame is after the last"):
        plan(frames="9-3")


def test_the_plan_is_parsed_once_and_survives_xcom():
    p = run_plan.RunPlan.of(plan(frames="5-9", samples=3))
    assert p.frames == run_plan.FrameRange(first=5, last=9) and p.samples == 3
    assert p.frames_per_chunk == LOCAL.frames_per_chunk and p.settings == LOCAL
    assert p.paths.frames["loop"] == str(run_plan.share_layout().frames(p.run_id, "loop"))
    assert run_plan.RunPlan.of(json.loads(json.dumps(p.xcom()))) == p


def test_sources_and_run_ids():
    assert pipeline.fetch_source("file:///d/songs", "a", "latest") == "file:///d/songs/a"
    assert pipeline.fetch_source("file:///d/songs", "a", 7) == "file:///d/songs/a@7"
    assert pipeline.fetch_source("p4://ssl:h:1666//depot/songs", "a", "latest") == (
        "p4://ssl:h:1666//depot/songs/a/...@latest"
    )
    # The trigger form sends a changelist as text; the plan records it as the number it names.
    local = settings.Settings(backend="local", depot="file:///d/songs", share_root="/tmp/share")
    for sent, planned in (("1234", 1234), ("latest", "latest")):
        context = {"params": {"song": "a", "changelist": sent}, "run_id": "manual__x"}
        assert run_plan.resolve_run(context, local).changelist == planned
    rid = run_plan.run_folder_id("manual__2026-01-01T00:00:00+00:00")
    assert rid.startswith("manual__2026-01-01T00-00-00+00-00-") and "/" not in rid and ":" not in rid
    assert run_plan.run_folder_id("plain_id") == "plain_id"


def test_settings_come_from_the_variable_only(monkeypatch):
    value = {"backend": "kubernetes", "depot": "p4://h:1666//depot/songs", "fps": 30, "samples": 3, "share_root": "/mnt/r",
             "namespace": "n1", "share_pvc": "pvc1", "p4_secret": "sec1", "images": {"blender": "r/b:1"}}  # fmt: skip
    monkeypatch.setenv("AIRFLOW_VAR_RENDERLAB", json.dumps(value))
    s = settings.load()
    assert s.model_dump(include=set(value)) == value
    assert s.image("blender") == "r/b:1"
    with pytest.raises(settings.SettingsError, match="no image reference for 'fetch'.*make images"):
        s.image("fetch")  # never computed here
    # The lab config is not a second source any more: a path to it is refused, not half-used.
    monkeypatch.setenv("AIRFLOW_VAR_RENDERLAB", json.dumps({**value, "config": "Pulumi.example.yaml"}))
    with pytest.raises(settings.SettingsError, match="config"):
        settings.load()
    monkeypatch.setenv(
        "AIRFLOW_VAR_RENDERLAB",
        json.dumps({"backend": "kubernetes", "depot": "file:///d", "share_root": "/r"}),
    )
    with pytest.raises(
        settings.SettingsError, match="kubernetes backend needs namespace, share_pvc, p4_secret"
    ):
        settings.load()
    monkeypatch.delenv("AIRFLOW_VAR_RENDERLAB")
    with pytest.raises(settings.SettingsError, match="is not set"):
        settings.load()
    monkeypatch.setenv("AIRFLOW_VAR_RENDERLAB", "{not json")
    with pytest.raises(settings.SettingsError, match="not JSON"):
        settings.load()
    monkeypatch.setenv("AIRFLOW_VAR_RENDERLAB", json.dumps({"backend": "slurm"}))
    with pytest.raises(settings.SettingsError, match="backend"):
        settings.load()


def _frames(folder: Path, first: int, last: int, size="64x36"):
    folder.mkdir(parents=True, exist_ok=True)
    subprocess.run(
        [
            "ffmpeg",
            "-v",
            "error",
            "-f",
            "lavfi",
            "-i",
            f"testsrc2=size={size}:rate=24",
            "-frames:v",
            str(last - first + 1),
            "-start_number",
            str(first),
            str(folder / "frame_%06d.png"),
        ],
        check=True,
    )


def test_assemble_and_validate(tmp_path):
    frames = tmp_path / "frames"
    _frames(frames, 5, 28)
    wav = tmp_path / "a.wav"
    subprocess.run(["ffmpeg", "-v", "error", "-f", "lavfi", "-i", "sine=duration=3", str(wav)], check=True)
    out = assemble.assemble(
        frames,
        5,
        28,
        fps=24,
        out=tmp_path / "v.mp4",
        audio=wav,
        audio_offset=0.5,
        contact_sheet=tmp_path / "c.png",
    )
    assert out["frames"] == 24 and out["duration_s"] == 1.0
    assert validate.png_size(tmp_path / "c.png") is not None
    report = tmp_path / "report.json"
    report.write_text(json.dumps({"max_timing_error_s": 0.002}))
    spec = {
        "variants": {
            "main": {
                "frames": str(frames),
                "first": 5,
                "last": 28,
                "fps": 24,
                "video": str(tmp_path / "v.mp4"),
            }
        },
        "timing_report": str(report),
        "timing_threshold_ms": 1000 / 24,
    }
    assert validate.validate(spec)["ok"] is True
    # A truncated frame, a too-large timing error: both reported with their paths.
    (frames / "frame_000010.png").write_bytes((frames / "frame_000010.png").read_bytes()[:100])
    report.write_text(json.dumps({"max_timing_error_s": 0.2}))
    problems = validate.validate(spec)["problems"]
    assert any("frame_000010.png: not a complete PNG" in p for p in problems)
    assert any("exceeds the threshold" in p for p in problems)


def test_assemble_refuses_missing_frames_and_leaves_nothing(tmp_path, capsys):
    frames = tmp_path / "frames"
    _frames(frames, 1, 5)
    (frames / "frame_000003.png").unlink()
    code = assemble.main(
        [
            "--frames",
            str(frames),
            "--first",
            "1",
            "--last",
            "5",
            "--fps",
            "24",
            "--out",
            str(tmp_path / "v.mp4"),
        ]
    )
    assert code == 1
    assert "1 frame(s) missing" in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["frames"]


class _Hook(BaseHTTPRequestHandler):
    status = 200
    bodies: list = []

    def do_POST(self):
        _Hook.bodies.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
        self.send_response(_Hook.status)
        self.end_headers()

    def log_message(self, *a):
        pass


@pytest.fixture
def hook(monkeypatch):
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Hook)
    Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_address[1]}/secret-token"
    monkeypatch.setenv("AIRFLOW_CONN_RENDERLAB_NOTIFY", url)
    _Hook.bodies, _Hook.status = [], 200
    yield url
    server.shutdown()
    server.server_close()


SUMMARY = {"state": "failed", "run_id": "r1", "song": "s", "failed_task": "fetch", "error": "boom"}


def test_notify_slack_and_generic(hook, tmp_path):
    rec = notify.notify("slack", SUMMARY, tmp_path)
    assert _Hook.bodies[-1] == {"text": rec["text"]} and "error in fetch: boom" in rec["text"]
    notify.notify("webhook", SUMMARY, tmp_path)
    assert _Hook.bodies[-1]["event"] == "renderlab.run" and _Hook.bodies[-1]["failed_task"] == "fetch"
    saved = (tmp_path / "notification-failed.json").read_text()
    assert json.loads(saved)["notification"]["delivered"] is True and "secret-token" not in saved


def test_notify_delivery_failure_is_recorded_not_raised(hook, tmp_path, monkeypatch):
    monkeypatch.setattr(notify.time, "sleep", lambda s: None)
    _Hook.status = 503
    rec = notify.notify("webhook", SUMMARY, tmp_path)
    assert rec["notification"]["delivered"] is False and "3 attempts" in rec["notification"]["error"]
    assert len(_Hook.bodies) == 3
    assert "secret-token" not in (tmp_path / "notification-failed.json").read_text()


def test_build_step_picks_project_files(tmp_path):
    (tmp_path / "song.mid").write_bytes(b"x")
    assert "--arrangement" not in build_argv(tmp_path, Path("out"), 60)
    (tmp_path / "arrangement.yaml").write_text("{}")
    assert build_argv(tmp_path, Path("out"), 24)[-2:] == ["--arrangement", str(tmp_path / "arrangement.yaml")]
    with pytest.raises(FileNotFoundError, match="song.mid"):
        build_argv(tmp_path / "nope", Path("out"), 60)


def test_build_step_rerun_rebuilds_nothing(tmp_path):
    """Same inputs, complete outputs: the second run prints the same result and touches no file."""
    from tests.pipeline.conftest import STANDIN

    project = tmp_path / "assets" / "song1"
    project.mkdir(parents=True)
    (project / "song.mid").write_bytes(b"MThd")
    env = {**os.environ, "PYTHONPATH": f"{STANDIN}{os.pathsep}{REPO}"}
    cmd = [sys.executable, "-m", "renderlab.jobs.build_step", "--project", str(project), "--out", str(tmp_path / "scene"),
           "--fps", "24"]  # fmt: skip

    def run():
        p = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=tmp_path, check=True)
        return json.loads(p.stdout.splitlines()[-1]), p.stderr

    first, _ = run()
    stamps = {f.name: f.stat().st_mtime_ns for f in (tmp_path / "scene").iterdir()}
    again, err = run()
    assert again == first and "nothing rebuilt" in err
    assert {f.name: f.stat().st_mtime_ns for f in (tmp_path / "scene").iterdir()} == stamps
    (project / "song.mid").write_bytes(b"MThd changed")
    _, err = run()
    assert "nothing rebuilt" not in err


@pytest.mark.parametrize("song", ["...", "a...b", "a..b", "..", ".", "x/../y", "a*", "%%1", "a b", "", "-x"])
def test_song_names_that_could_widen_a_depot_path_are_refused(song):
    """The DAG Param pattern refuses them (jsonschema applies it with re.search), and so does the one place
    that builds the depot path, for callers that bypass the Param."""
    import re

    assert re.search(pipeline.SONG_PATTERN, song) is None
    with pytest.raises(ValueError, match="song"):
        pipeline.fetch_source("p4://h:1666//depot/songs", song, "latest")
    with pytest.raises(ValueError, match="song"):
        pipeline.fetch_source("file:///d/songs", song, 3)


@pytest.mark.parametrize("depot", ["p4://h:1666//depot/...", "p4://h:1666//depot/*/x", "p4://h:1666//d/%%1"])
def test_depot_roots_with_wildcards_are_refused(depot):
    with pytest.raises(ValueError, match="wildcard"):
        pipeline.fetch_source(depot, "song", "latest")


def test_song_names_the_pattern_keeps():
    import re

    for song in ("frere_groove", "ode_waltz", "v1.2", "A+B-c"):
        assert re.search(pipeline.SONG_PATTERN, song)
        assert (
            pipeline.fetch_source("p4://h:1666//depot/songs", song, 4)
            == f"p4://h:1666//depot/songs/{song}/...@4"
        )


@pytest.mark.parametrize("worst", ["NaN", "Infinity", "-Infinity", "true"])
def test_validate_fails_a_timing_error_that_is_not_a_number(tmp_path, worst):
    """NaN compares false with every threshold; it used to pass as ok."""
    report = tmp_path / "report.json"
    report.write_text('{"max_timing_error_s": ' + worst + "}")
    problems, _ = validate.check_timing(report, 41.7)
    assert len(problems) == 1 and "max_timing_error_s" in problems[0]
    assert (
        validate.validate({"variants": {}, "timing_report": str(report), "timing_threshold_ms": 41.7})["ok"]
        is False
    )
    assert "finite" in validate.spec_problem(
        {"variants": {}, "timing_report": "r", "timing_threshold_ms": float("inf")}
    )


@pytest.mark.parametrize("status", [400, 403, 404, 410])
def test_notify_a_4xx_is_final_not_retried(hook, tmp_path, monkeypatch, status):
    """A 4xx says the URL or the body is wrong; sending it again changes nothing."""
    monkeypatch.setattr(notify.time, "sleep", lambda s: None)
    _Hook.status = status
    rec = notify.notify("webhook", SUMMARY, tmp_path)
    assert len(_Hook.bodies) == 1
    assert rec["notification"]["delivered"] is False and f"HTTP {status}" in rec["notification"]["error"]


def test_notify_with_debug_logging_never_logs_the_webhook_token(hook, tmp_path, caplog):
    """Urllib3 logs each request line at DEBUG, path (and token) included."""
    import logging

    # urllib3's own logger at DEBUG and propagating: an earlier test (Airflow's logging set-up) may have
    # changed either, and the redaction must hold whatever the level.
    logger = logging.getLogger("urllib3")
    propagate, logger.propagate = logger.propagate, True
    try:
        with caplog.at_level(logging.DEBUG), caplog.at_level(logging.DEBUG, logger="urllib3"):
            notify.notify("webhook", SUMMARY, tmp_path)
    finally:
        logger.propagate = propagate
    text = "\n".join(r.getMessage() for r in caplog.records)
    assert "POST" in text and "/<redacted>" in text  # urllib3's request line was logged, redacted
    assert "secret-token" not in text


# --- the trigger's params --------------------------------------------------------------

LOCAL_SETTINGS = settings.Settings(backend="local", depot="file:///d/songs", share_root="/tmp/share")


def test_unknown_conf_keys_are_refused_at_plan_time():
    """A typo ('sampels') used to render with the defaults."""
    context = {"params": {"song": "a", "sampels": 512}, "run_id": "manual__x"}
    with pytest.raises(ValueError, match="unknown param.*'sampels'"):
        run_plan.resolve_run(context, LOCAL_SETTINGS)


@pytest.mark.parametrize("song", ["demo\n", "demo\r\n", "de\nmo"])
def test_a_song_name_with_a_newline_is_refused(song):
    import re

    assert not re.search(pipeline.SONG_PATTERN, song)
    with pytest.raises(ValueError):
        pipeline.fetch_source("file:///d/songs", song, "latest")


@pytest.mark.parametrize("frames", ["0-0", "0-10"])
def test_frame_zero_is_refused_at_plan_time_not_after_the_build(frames):
    import re

    context = {"params": {"song": "a", "frames": frames}, "run_id": "manual__x"}
    with pytest.raises(ValueError):
        run_plan.resolve_run(context, LOCAL_SETTINGS)
    # ... and already by the trigger form's Param (Airflow checks it with re.search, before any task runs).
    found = re.search(
        r'"frames": Param\(.*?pattern=r"([^"]+)"', (REPO / "dags" / "render.py").read_text(), re.S
    )
    assert not re.search(found.group(1), frames) and re.search(found.group(1), "1-240")


def test_the_dag_params_are_the_plans_param_names():
    import ast

    tree = ast.parse((REPO / "dags" / "render.py").read_text())
    fn = next(n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name == "_params")
    ret = next(n for n in ast.walk(fn) if isinstance(n, ast.Return))
    assert tuple(k.value for k in ret.value.keys) == run_plan.PARAM_NAMES


class _Html(BaseHTTPRequestHandler):
    def do_POST(self):
        self.send_response(200)
        self.send_header("Content-Type", "text/html")
        self.end_headers()
        self.wfile.write(b"<!doctype html><html><body>\x1b]0;pwned\x07 a login page</body></html>")

    def log_message(self, *a):
        pass


def _render(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "renderlab.workstation.trigger", *args], cwd=REPO, capture_output=True, text=True,
        env={**os.environ, "PYTHONPATH": str(REPO), "AIRFLOW_PASSWORD": "x", **(env or {})}, timeout=60, check=False,
    )  # fmt: skip


def test_a_server_that_answers_html_is_named_not_blamed_on_conf():
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Html)
    Thread(target=server.serve_forever, daemon=True).start()
    try:
        res = _render("--song", "demo", "--url", f"http://127.0.0.1:{server.server_address[1]}")
    finally:
        server.shutdown()
        server.server_close()
    assert res.returncode == 2, res.stderr
    [line] = res.stderr.strip().splitlines()
    assert "not JSON" in line and "AIRFLOW_URL" in line and "--conf" not in line
    assert "\x1b" not in res.stderr and "\\x1b" in res.stderr  # the server's escape shown, not obeyed


@pytest.mark.parametrize(
    ("args", "says"),
    [(["--poll", "-1"], "--poll -1 is out of range"), (["--poll", "nan"], "--poll nan"),
     (["--timeout", "-5"], "--timeout -5"), (["--conf", '{"sampels": 4}'], "unknown param(s) 'sampels'"),
    ],
    ids=["poll-negative", "poll-nan", "timeout-negative", "conf-typo"],
)  # fmt: skip
def test_bad_trigger_options_are_refused_before_anything_is_triggered(args, says):
    # A closed port: had it tried to trigger, the error would be "cannot reach Airflow".
    res = _render("--url", "http://127.0.0.1:9", *args)
    assert res.returncode == 2, res.stderr
    [line] = res.stderr.strip().splitlines()
    assert says in line, line


def test_server_text_is_printed_without_its_terminal_escapes():
    from renderlab.workstation import trigger

    assert (
        trigger.printable("run\x1b[2J\x1b]0;title\x07id\ttab\nline")
        == "run\\x1b[2J\\x1b]0;title\\x07id\ttab\nline"
    )
    assert trigger._ti_name({"task_id": "render\x1b[31m", "map_index": -1}) == "render\\x1b[31m"


# --- a still preset (poster) renders one frame ---------------------------------------------------------


def test_a_still_preset_over_many_frames_is_refused_by_the_first_task():
    """poster with frames 'all' (or any range) used to be cut into frames_per_chunk render Jobs that each
    failed, with retries, after the fetch and the build had run; now the plan itself refuses it."""
    for frames in ("all", "1-240", "5-6"):
        with pytest.raises(
            ValueError, match=rf"preset 'poster' renders one still frame, but frames is '{frames}'"
        ):
            plan(preset="poster", frames=frames)
    # The lab default counts the same as a param: a poster lab default with frames 'all' is refused too.
    poster = LOCAL.model_copy(update={"preset": "poster"})
    context = {"params": {"song": "s"}, "run_id": "manual__2026-01-01T00:00:00+00:00"}
    with pytest.raises(ValueError, match="one still frame"):
        run_plan.resolve_run(context, poster)


def test_a_still_preset_with_one_frame_is_one_chunk_the_render_entrypoint_accepts(tmp_path, monkeypatch):
    from blender_scripts import render as render_cli

    one = plan(preset="poster", frames="50-50")
    (chunk,) = pipeline.chunks(one, BUILT)
    assert chunk == {
        "variant": "main",
        "blend": "s.blend",
        "first": 50,
        "last": 50,
        "label": "frames 50-50",
        "run_frames": 1,
    }
    monkeypatch.chdir(tmp_path)  # the Jobs' working directory is the share root
    (tmp_path / "s.blend").write_bytes(b"")
    ns = render_cli._parse(pipeline.render_command(one, chunk)[3:])  # the entrypoint's own checks
    assert (ns.preset, ns.first, ns.last) == ("poster", 50, 50)
    # What the old plan handed on (a 48-frame chunk of a poster) is what the entrypoint refuses.
    with pytest.raises(render_cli.ContentError, match="renders one still frame"):
        render_cli._parse([*pipeline.render_command(one, {**chunk, "last": 97, "run_frames": 48})[3:]])


def test_make_render_refuses_a_still_preset_over_many_frames_before_triggering(capsys):
    from renderlab.workstation import trigger

    # A port nothing listens on: the refusal must come before any connection.
    rc = trigger.main(["--preset", "poster", "--frames", "all", "--url", "http://127.0.0.1:9", "--no-follow"])
    err = capsys.readouterr().err
    assert rc == 2 and err.count("\n") == 1
    assert "preset 'poster' renders one still frame, but frames is 'all'" in err
