"""The gallery Job on a real run folder (real assemble + validate outputs): the page shows what the run
made, the index lists runs newest first, a re-run writes nothing, and nothing half-written is ever left."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from renderlab.jobs import gallery
from tests.docs.runs import REPO, make_run


def publish(share: Path, meta: dict) -> dict:
    return gallery.publish(share / "runs" / meta["run_id"], share / "gallery", meta)


@pytest.fixture(scope="module")
def share(tmp_path_factory) -> tuple[Path, dict]:
    root = tmp_path_factory.mktemp("share")
    return root, make_run(root, "manual__2026-01-02T10-00-00-00-00")


def test_run_page_shows_the_run(share):
    root, meta = share
    result = publish(root, meta)
    page_dir = root / "gallery" / "runs" / meta["run_id"]
    page = (page_dir / "index.html").read_text()
    assert result["page"] == str(page_dir / "index.html")
    # Both videos in players, the loop one looping; their files are on the page's own media/ folder.
    assert 'id="video-main"' in page and 'src="media/tiny_main.mp4"' in page
    assert 'id="video-loop"' in page and " loop " in page.split('id="video-loop"')[1].split(">")[0] + " "
    for name in ("tiny_main.mp4", "tiny_loop.mp4", "tiny_main_contact.png", "tiny_loop_contact.png"):
        src = root / "runs" / meta["run_id"] / "video" / name
        assert (page_dir / "media" / name).read_bytes() == src.read_bytes()
    assert '<span class="ok" id="verdict">passed</span>' in page
    # One dot per note of the timing report, each with its own tooltip.
    assert page.count('<circle class="note"') == 24
    assert "changelist" in page and ">7<" in page
    for task in meta["durations"]:
        assert task in page
    record = json.loads((page_dir / "run.json").read_text())
    assert record["variants"]["main"]["duration_s"] == pytest.approx(1.5)  # 36 frames at 24 fps
    assert record["variants"]["main"]["probed_video_s"] == pytest.approx(1.5, abs=0.05)


def test_run_page_shows_the_strike_visibility_of_both_scenes(share):
    """The build report's strike-visibility figures (blender_scripts.visibility) on the run page, per scene:
    the fraction seen (from the counts), the median and smallest marble, the passages where strikes were
    missed; the page's record keeps the counts."""
    root, meta = share
    publish(root, meta)
    page_dir = root / "gallery" / "runs" / meta["run_id"]
    page = (page_dir / "index.html").read_text()
    main = page.split('id="visibility-main"')[1].split("</tr>")[0]
    assert '<strong class="ok">95.8%</strong> (23 of 24)' in main
    assert "41.4 px" in main and "17.5 px" in main and "1.50-1.50 s: 15 of 16" in main
    loop = page.split('id="visibility-loop"')[1].split("</tr>")[0]
    assert '<strong class="ok">100.0%</strong> (12 of 12)' in loop and loop.endswith("<td>-</td>")
    record = json.loads((page_dir / "run.json").read_text())
    assert record["strikes_visible"]["main"] == {"strikes": 24, "visible": 23, "median_px": 41.4}


def test_a_run_below_the_showcase_bar_is_marked_and_never_rounded_up(share, tmp_path):
    root, meta = share
    shutil.copytree(root / "runs" / meta["run_id"], tmp_path / "runs" / meta["run_id"])
    report_path = tmp_path / "runs" / meta["run_id"] / "scene" / "report.json"
    report = json.loads(report_path.read_text())
    report["strike_visibility"].update(strikes=2000, visible=1999, fraction=1.0)  # 99.95%: not all seen
    report["loop_strike_visibility"].update(strikes=100, visible=90, fraction=1.0)  # the fraction lies
    report_path.write_text(json.dumps(report))
    publish(tmp_path, meta)
    page = (tmp_path / "gallery" / "runs" / meta["run_id"] / "index.html").read_text()
    assert '<strong class="ok">99.9%</strong> (1999 of 2000)' in page
    assert '<strong class="bad">90.0%</strong> (90 of 100)' in page


def test_second_publish_writes_nothing(share):
    root, meta = share
    publish(root, meta)
    files = {p: p.stat().st_mtime_ns for p in (root / "gallery").rglob("*") if p.is_file()}
    again = publish(root, meta)
    assert again["up_to_date"] and again["written"] == []
    assert {p: p.stat().st_mtime_ns for p in (root / "gallery").rglob("*") if p.is_file()} == files


def test_changed_input_republishes_the_page(share):
    root, meta = share
    publish(root, meta)
    changed = {**meta, "changelist": 8}
    result = publish(root, changed)
    page = root / "gallery" / "runs" / meta["run_id"] / "index.html"
    assert str(page) in result["written"] and ">8<" in page.read_text()
    # Media that did not change are not copied again.
    assert not [w for w in result["written"] if "/media/" in w]
    publish(root, meta)


def test_index_lists_runs_newest_first(share, tmp_path):
    root, meta = share
    for run_id, started in (("r-old", "2026-01-01T08:00:00+00:00"), ("r-new", "2026-03-01T08:00:00+00:00"),
                            ("r-mid", "2026-02-01T08:00:00+00:00")):  # fmt: skip
        shutil.copytree(root / "runs" / meta["run_id"], tmp_path / "runs" / run_id)
        publish(tmp_path, {**meta, "run_id": run_id, "started": started})
    index = (tmp_path / "gallery" / "index.html").read_text()
    order = [index.index(f'href="runs/{r}/index.html"') for r in ("r-new", "r-mid", "r-old")]
    assert order == sorted(order)
    assert index.count('<tr class="run">') == 3


def test_cli_contract_and_clear_errors(share, tmp_path):
    root, meta = share
    cli = [sys.executable, "-m", "renderlab.jobs.gallery"]
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    ok = subprocess.run([*cli, "--run", f"runs/{meta['run_id']}", "--out", "gallery", "--meta", json.dumps(meta)],
                        cwd=root, env=env, capture_output=True, text=True, check=False)  # fmt: skip
    assert ok.returncode == 0, ok.stderr
    assert json.loads(ok.stdout.strip().splitlines()[-1])["index"] == "gallery/index.html"  # the last line
    bad = subprocess.run([*cli, "--run", "runs/nope", "--out", "gallery", "--meta", "{}"], cwd=root, env=env,
                         capture_output=True, text=True, check=False)  # fmt: skip
    assert bad.returncode == 2 and "run folder runs/nope does not exist" in bad.stderr
    notjson = subprocess.run([*cli, "--run", f"runs/{meta['run_id']}", "--out", "g2", "--meta", "{"], cwd=root,
                             env=env, capture_output=True, text=True, check=False)  # fmt: skip
    assert notjson.returncode == 2 and "--meta is not JSON" in notjson.stderr
    assert not (root / "g2").exists()  # nothing written on bad input


def test_failed_write_leaves_the_old_page(share, monkeypatch):
    """A crash while writing the page keeps the previous page whole and leaves no temp file behind."""
    root, meta = share
    publish(root, meta)
    page = root / "gallery" / "runs" / meta["run_id"] / "index.html"
    before = page.read_text()

    def crash(data, media):
        raise OSError("disk full")

    monkeypatch.setattr(gallery, "run_page", crash)
    with pytest.raises(OSError):
        publish(root, {**meta, "changelist": 99})
    assert page.read_text() == before
    assert not [p for p in (root / "gallery").rglob("*") if ".tmp" in p.name]
    monkeypatch.undo()
    assert ">99<" in page.read_text() if publish(root, {**meta, "changelist": 99})["written"] else False
    publish(root, meta)
