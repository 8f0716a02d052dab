"""A run's gallery page while it renders: made from the chunks' progress records (hostile), escaped, reloading
itself; replaced by the finished page when the run is published. The browser test watches a real render."""

from __future__ import annotations

import functools
import http.server
import json
import os
import re
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from renderlab.base import progress
from renderlab.base.progress import ChunkProgress
from renderlab.jobs import gallery, gallery_live

REPO = Path(__file__).resolve().parents[2]


def _record(first, last, done, run_frames, per_frame_s=2.0) -> ChunkProgress:
    return ChunkProgress(variant="main", first=first, last=last, done=done, run_frames=run_frames,
                         per_frame_s=per_frame_s, eta_s=(last - first + 1 - done) * per_frame_s,
                         newest_frame=first + done - 1 if done else None, updated="2026-01-01T00:00:00Z")  # fmt: skip


def test_the_live_page_sums_the_chunks_and_escapes_what_it_shows(tmp_path):
    share = tmp_path
    prog, page_dir = share / "runs/r1/progress", share / "gallery/runs/r1"
    progress.write(prog, _record(1, 10, 4, 30))
    progress.write(prog, _record(11, 20, 2, 30))
    (prog / "main-21-30.json").write_text(
        '{"variant": "main", "first": 21, "last": 30, "done": 99}'
    )  # hostile
    thumb = gallery_live.thumb_path(page_dir, "main-1-10")
    thumb.parent.mkdir(parents=True)
    thumb.write_bytes(b"\x89PNG")
    (page_dir / gallery.RECORD).write_text("{}")  # a page published before: no longer final
    html = gallery_live.publish_live(prog, page_dir, "<script>alert(1)</script>").read_text()
    assert '<meta http-equiv="refresh" content="5">' in html
    assert '<span id="frames-done">6</span> of <span id="frames-total">30</span>' in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html and "<script>" not in html
    assert html.count('class="chunk"') == 2  # the hostile record is left out
    assert 'src="live/main-1-10.png?frame=4"' in html and "main-11-20.png" not in html  # no thumbnail yet
    # 24 frames to go, 2 chunks rendering at 2 s/frame: 24 s
    assert '<span id="eta">24 s</span>' in html
    assert not (page_dir / gallery.RECORD).exists()


def test_publishing_the_run_replaces_the_live_page(tmp_path):
    run, out = tmp_path / "runs/r2", tmp_path / "gallery"
    run.mkdir(parents=True)
    progress.write(run / "progress", _record(1, 2, 1, 2))
    page_dir = out / "runs/r2"
    gallery_live.thumb_path(page_dir, "main-1-2").parent.mkdir(parents=True)
    gallery_live.thumb_path(page_dir, "main-1-2").write_bytes(b"x")
    gallery_live.publish_live(run / "progress", page_dir, "song")
    gallery.publish(run, out, {"run_id": "r2", "song": "song"})
    html = (page_dir / "index.html").read_text()
    assert 'id="verdict"' in html and "refresh" not in html and "frames-done" not in html
    assert not (page_dir / "live").exists()
    assert json.loads((page_dir / gallery.RECORD).read_text())["run_id"] == "r2"


def test_the_index_lists_a_run_while_it_renders_then_as_published(tmp_path, capsys):
    out = tmp_path / "gallery"
    old, run = tmp_path / "runs/r0", tmp_path / "runs/r3"
    old.mkdir(parents=True)
    gallery.publish(old, out, {"run_id": "r0", "song": "earlier", "started": "2026-01-01T00:00:00Z"})
    progress.write(run / "progress", _record(1, 10, 3, 30))
    gallery_live.publish_live(run / "progress", out / "runs/r3", "<b>song</b>")
    index = (out / "index.html").read_text()
    assert "rendering: 3 of 30 frames, about" in index and "&lt;b&gt;song&lt;/b&gt;" in index
    assert index.index("runs/r3/") < index.index("runs/r0/")  # the run rendering comes first
    record = json.loads((out / "runs/r3" / gallery.LIVE_RECORD).read_text())
    assert (record["run_id"], record["done"], record["total"]) == ("r3", 3, 30)
    # A live record of the wrong shape (the share is writable by others) hides the run, with a warning.
    (out / "runs/r3" / gallery.LIVE_RECORD).write_text('{"run_id": "r3", "done": -1}')
    assert [r["run_id"] for r in gallery.index_records(out)] == ["r0"]
    assert "live record" in capsys.readouterr().err
    huge = {**record, "title": "x" * 100_000}  # nothing the render wrote: not shown on the index
    (out / "runs/r3" / gallery.LIVE_RECORD).write_text(json.dumps(huge))
    assert [r["run_id"] for r in gallery.index_records(out)] == ["r0"]
    gallery.publish(run, out, {"run_id": "r3", "song": "song"})
    index = (out / "index.html").read_text()
    assert "rendering:" not in index and index.count('class="run"') == 2
    assert not (out / "runs/r3" / gallery.LIVE_RECORD).exists()


# --- the browser watches a real render ---------------------------------------------------------------------

TINY = ["--resolution-percentage", "10", "--samples", "1", "--device", "cpu"]


@pytest.fixture(scope="module")
def ode_blend(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("ode") / "scene"
    proc = subprocess.run(
        [sys.executable, "-m", "blender_scripts.build", "--midi", str(REPO / "depot/songs/ode_waltz/song.mid"),
         "--out", str(out), "--fps", "60"],
        cwd=REPO, capture_output=True, text=True, check=False, timeout=600,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-2000:]
    return Path(json.loads(proc.stdout.strip().splitlines()[-1])["blend"])


def _render(share: Path, blend: Path, frames: str) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "blender_scripts.render", "--blend", str(blend), "--frames", frames,
         "--out", "runs/live1/frames/main", "--progress", "runs/live1/progress", "--run-frames", "4",
         "--live", "gallery/runs/live1", "--title", "ode_waltz", *TINY],
        cwd=share, capture_output=True, text=True, check=False, timeout=600,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "s/frame, ETA" in proc.stderr  # the task log's progress line


@pytest.mark.slow
@pytest.mark.bpy
@pytest.mark.browser
def test_the_browser_sees_the_live_page_follow_the_render_then_the_final_page(
    ode_blend, browser_page, tmp_path
):
    from playwright.sync_api import expect

    share = tmp_path / "share"
    share.mkdir()
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(share / "gallery"))
    handler.log_message = lambda *a: None  # type: ignore[attr-defined]
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    page = browser_page.page
    try:
        _render(share, ode_blend, "1-2")  # the first render task of two
        page.goto(f"http://127.0.0.1:{server.server_port}/index.html")  # the gallery lists the run rendering
        expect(page.locator("tr.run .rendering")).to_have_text(
            re.compile(r"^rendering: 2 of 4 frames, about .+ to go$")
        )
        page.locator("tr.run a").click()
        expect(page).to_have_url(f"http://127.0.0.1:{server.server_port}/runs/live1/index.html")
        expect(page.locator("#frames-done")).to_have_text("2")
        expect(page.locator("#frames-total")).to_have_text("4")
        thumb = page.locator("tr.chunk img.thumb")
        expect(thumb).to_have_count(1)
        assert page.evaluate("document.querySelector('img.thumb').naturalWidth") > 0
        loads: list[str] = []
        page.on("load", lambda: loads.append(page.url))

        _render(share, ode_blend, "3-4")  # the second: the page reloads itself and follows
        expect(page.locator("#frames-done")).to_have_text("4", timeout=30_000)
        expect(page.locator("tr.chunk img.thumb")).to_have_count(2)
        assert loads, "the page did not reload itself"
        browser_page.screenshot("live")

        result = gallery.publish(
            share / "runs/live1", share / "gallery", {"run_id": "live1", "song": "ode_waltz"}
        )
        assert result["page"].endswith("index.html")
        expect(page.locator("#verdict")).to_be_visible(timeout=30_000)  # the finished page, by its own reload
        expect(page.locator("#frames-done")).to_have_count(0)
        assert page.locator('meta[http-equiv="refresh"]').count() == 0
        browser_page.screenshot("final")
        browser_page.assert_clean()
    finally:
        server.shutdown()
        server.server_close()
