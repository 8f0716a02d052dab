"""The gallery Job over a hostile share: whoever can write a run folder, the song or the DAG's
params must not get markup into a page, files out through it, or the index stuck."""

from __future__ import annotations

import json
import os
import shutil
from html.parser import HTMLParser
from pathlib import Path

import pytest

from renderlab.jobs import gallery
from tests.docs.runs import make_run

MARKUP = '<img src=x onerror="alert(1)">'
QUOTE_BREAK = '" onmouseover="alert(2)'


@pytest.fixture(scope="module")
def pristine(tmp_path_factory) -> tuple[Path, dict]:
    root = tmp_path_factory.mktemp("share")
    return root, make_run(root, "r-base")


@pytest.fixture
def share(pristine, tmp_path: Path) -> tuple[Path, dict]:
    """A fresh copy of the real run for each test, so one test's damage never reaches another."""
    root, meta = pristine
    shutil.copytree(root / "runs", tmp_path / "runs", symlinks=True)
    return tmp_path, json.loads(json.dumps(meta))


class _Tags(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str | None]]] = []

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))


def tags_of(page: str) -> list[tuple[str, dict[str, str | None]]]:
    parser = _Tags()
    parser.feed(page)
    return parser.tags


def assert_inert(page: str) -> None:
    """No element or attribute the share put there: no script, no event handler, no foreign URL."""
    for tag, attrs in tags_of(page):
        assert tag not in ("script", "iframe", "object", "embed"), tag
        assert tag != "img" or attrs.get("src", "").startswith(("media/", "runs/")), attrs
        for name, value in attrs.items():
            assert not name.startswith("on"), (tag, name, value)
            if name in ("src", "href"):
                assert ":" not in (value or "").split("/")[0] or value.startswith("data:,"), (tag, value)


# --- class 2: markup from the share reaches the page -----------------------------------------------------


def test_markup_in_file_names_song_params_and_reports_is_shown_as_text(share):
    root, meta = share
    run = root / "runs" / meta["run_id"]
    song = meta["song"]
    # A variant whose file name is markup, one whose name breaks out of an attribute, one with URL syntax.
    for name in (MARKUP, QUOTE_BREAK, "a#b?c"):
        shutil.copy(run / "video" / f"{song}_main.mp4", run / "video" / f"{song}_{name}.mp4")
    validation = json.loads((run / "report" / "validation.json").read_text())
    validation["problems"] = [f"problem {MARKUP}"]
    (run / "report" / "validation.json").write_text(json.dumps(validation))
    report = json.loads((run / "scene" / "report.json").read_text())
    report["notes"][0]["track_name"] = "</title><script>alert(3)</script>"
    report["notes"][1]["element"] = MARKUP
    (run / "scene" / "report.json").write_text(json.dumps(report))
    meta["params"]["preset"] = MARKUP
    meta["durations"][MARKUP] = 1.0
    meta["changelist"] = MARKUP
    gallery.publish(run, root / "gallery", meta)
    page = (root / "gallery" / "runs" / meta["run_id"] / "index.html").read_text()
    assert_inert(page)
    assert "&lt;img src=x onerror=" in page  # shown, as text
    assert "&lt;script&gt;alert(3)&lt;/script&gt;" in page
    # The URL syntax in a name is percent-encoded: the link names the file, not a fragment or a query.
    srcs = [a["src"] for t, a in tags_of(page) if t == "video"]
    assert "media/tiny_a%23b%3Fc.mp4" in srcs, srcs
    assert (root / "gallery" / "runs" / meta["run_id"] / "media" / "tiny_a#b?c.mp4").is_file()


def test_markup_in_a_record_does_not_reach_the_index(share):
    root, meta = share
    meta["song"] = MARKUP
    meta["started"] = f"2026-01-01T00:00:00 {MARKUP}"
    gallery.publish(root / "runs" / meta["run_id"], root / "gallery", meta)
    index = (root / "gallery" / "index.html").read_text()
    assert_inert(index)
    assert "&lt;img src=x" in index


# --- class 3: files leave through the gallery ------------------------------------------------------------


def test_only_regular_files_inside_the_run_are_published(share, tmp_path: Path, capsys):
    root, meta = share
    run = root / "runs" / meta["run_id"]
    secret = tmp_path / "secret.txt"
    secret.write_text("TOP SECRET")
    (run / "video" / "tiny_leak.mp4").symlink_to(secret)  # a link to a secret file
    (run / "video" / "tiny_leak_contact.png").symlink_to(secret)
    os.mkfifo(run / "video" / "tiny_fifo.mp4")  # would block a reader forever
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    (outside / "problems.json").write_text(json.dumps({"ok": False, "problems": ["TOP SECRET"]}))
    shutil.rmtree(run / "report")
    (run / "report").symlink_to(outside)  # a linked folder on the way to a record
    (outside / "validation.json").symlink_to(outside / "problems.json")
    gallery.publish(run, root / "gallery", meta)
    page_dir = root / "gallery" / "runs" / meta["run_id"]
    published = {p.name for p in (page_dir / "media").iterdir()}
    assert published == {"tiny_main.mp4", "tiny_loop.mp4", "tiny_main_contact.png", "tiny_loop_contact.png"}
    for f in page_dir.rglob("*"):
        assert not f.is_symlink() and b"TOP SECRET" not in (f.read_bytes() if f.is_file() else b"")
    assert "symbolic link" in capsys.readouterr().err


def test_a_linked_video_folder_or_run_folder_publishes_nothing_from_outside(share, tmp_path: Path):
    root, meta = share
    run = root / "runs" / meta["run_id"]
    outside = tmp_path / "private"
    (run / "video").rename(outside)
    (run / "video").symlink_to(outside)
    gallery.publish(run, root / "gallery", meta)
    assert not (root / "gallery" / "runs" / meta["run_id"] / "media").exists()
    linked = root / "runs" / "r-linked"
    linked.symlink_to(tmp_path)
    with pytest.raises(gallery.GalleryError, match="symbolic link"):
        gallery.publish(linked, root / "gallery", {**meta, "run_id": "r-linked"})


# --- class 9: records from the share are read through a schema; a bad one is skipped with a warning -----


@pytest.mark.parametrize(
    "damage",
    [b"[1, 2]", b"\xff\xfe", b'{"run_id": 7}', b'{"song": "no run id"}', b'{"run_id": "r-base", "variants": []}',
     b'{"run_id": "other-run"}', b'{"run_id": "r-x", "started": {"a": 1}, "ok": "yes"}', b"NaN"],
    ids=["list", "binary", "int-id", "no-id", "variants-list", "wrong-id", "wrong-types", "nan"],
)  # fmt: skip
def test_a_damaged_record_of_another_run_never_stops_a_publish(share, damage: bytes, capsys):
    root, meta = share
    other = root / "gallery" / "runs" / "r-x"
    other.mkdir(parents=True)
    (other / "index.html").write_text("<p>another run</p>")
    (other / "run.json").write_bytes(damage)
    result = gallery.publish(root / "runs" / meta["run_id"], root / "gallery", meta)
    index = (root / "gallery" / "index.html").read_text()
    assert result["runs"] == 1 and f'href="runs/{meta["run_id"]}/index.html"' in index  # not stale
    assert "r-x" not in index
    assert "gallery: warning:" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("rel", "doc"),
    [("report/validation.json", {"ok": "yes", "variants": [], "problems": "x"}),
     ("report/validation.json", {"variants": {"main": {"video": {"video_duration_s": "NaN"}}}}),
     ("report/validation.json", [1]),
     ("scene/report.json", {"notes": {"a": 1}}),
     ("scene/report.json", {"notes": [{"time": "x", "error": 1}, None, 7]})],
    ids=["validation-types", "validation-nan", "validation-list", "report-notes-dict", "report-bad-notes"],
)  # fmt: skip
def test_a_validation_or_timing_report_of_the_wrong_shape_is_left_out(share, rel: str, doc, capsys):
    root, meta = share
    (root / "runs" / meta["run_id"] / rel).write_text(json.dumps(doc))
    gallery.publish(root / "runs" / meta["run_id"], root / "gallery", meta)
    page = (root / "gallery" / "runs" / meta["run_id"] / "index.html").read_text()
    assert 'id="video-main"' in page  # the page is still made, without the damaged part
    if rel.startswith("report/"):
        assert "not validated" in page
        assert "wrong shape" in capsys.readouterr().err
    else:
        assert "No timing report" in page or 'class="note"' not in page


@pytest.mark.parametrize(
    "block",
    [{"strikes": "24", "visible": 23, "median_px": 20.0},
     {"strikes": 24, "visible": 25, "median_px": 20.0},
     {"strikes": 24, "visible": 23, "median_px": float("nan")},
     {"strikes": 24, "visible": 23, "median_px": 1e300},
     {"strikes": True, "visible": True, "median_px": 20.0},
     {"strikes": 24, "visible": 23, "median_px": 20.0,
      "worst_passages": [{"start_s": 0, "end_s": 1, "strikes": 4, "visible": 3}] * 1000},
     {"strikes": 24, "visible": 23, "median_px": 20.0,
      "worst_passages": [{"start_s": MARKUP, "end_s": 1, "strikes": 4, "visible": 3}]},
     [MARKUP]],
    ids=["count-string", "more-seen-than-struck", "nan-px", "huge-px", "bools", "passages-unbounded",
         "passage-markup", "list"],
)  # fmt: skip
def test_a_strike_visibility_block_of_the_wrong_shape_is_left_out(share, block, capsys):
    """The report's visibility figures come from the share: a damaged block leaves out only its own row
    (the other scene's row and the timing plot stay), with a warning naming it."""
    root, meta = share
    path = root / "runs" / meta["run_id"] / "scene" / "report.json"
    report = json.loads(path.read_text())
    report["strike_visibility"] = block
    path.write_text(json.dumps(report))  # NaN is written as the bare token NaN, as Python's json does
    gallery.publish(root / "runs" / meta["run_id"], root / "gallery", meta)
    page = (root / "gallery" / "runs" / meta["run_id"] / "index.html").read_text()
    assert_inert(page)
    assert 'id="visibility-main"' not in page and 'id="visibility-loop"' in page
    assert page.count('<circle class="note"') == 24
    assert "strike visibility has the wrong shape" in capsys.readouterr().err
    record = json.loads((root / "gallery" / "runs" / meta["run_id"] / "run.json").read_text())
    assert list(record["strikes_visible"]) == ["loop"]


def test_markup_in_a_strike_visibility_block_never_reaches_the_page(share):
    root, meta = share
    path = root / "runs" / meta["run_id"] / "scene" / "report.json"
    report = json.loads(path.read_text())
    report["strike_visibility"][MARKUP] = MARKUP  # unknown keys are ignored, never shown
    report["strike_visibility"]["least_visible"] = {"frame": MARKUP}
    path.write_text(json.dumps(report))
    gallery.publish(root / "runs" / meta["run_id"], root / "gallery", meta)
    page = (root / "gallery" / "runs" / meta["run_id"] / "index.html").read_text()
    assert_inert(page)
    assert 'id="visibility-main"' in page and "onerror" not in page


def test_a_run_folder_named_dot_dot_never_writes_at_the_gallery_root(share):
    root, meta = share
    with pytest.raises(gallery.GalleryError, match="not a run folder's name"):
        gallery.publish(root / "runs" / "..", root / "gallery", {**meta, "run_id": None})
    assert not (root / "gallery" / "index.html").exists()


@pytest.mark.parametrize(
    "bad", [{"variants": [1, 2]}, {"durations": [1]}, {"run_id": "../x"}, {"params": "preset"}],
    ids=["variants-list", "durations-list", "run-id-dotdot", "params-string"],
)  # fmt: skip
def test_a_meta_of_the_wrong_shape_is_one_error(share, bad: dict):
    root, meta = share
    with pytest.raises(gallery.GalleryError, match="--meta"):
        gallery.publish(root / "runs" / meta["run_id"], root / "gallery", {**meta, **bad})


# --- class 10: a killed assemble's temp MP4 is never a variant --------------------------------------------


def test_a_killed_assembles_temp_mp4_is_not_published(share):
    root, meta = share
    video = root / "runs" / meta["run_id"] / "video"
    # The name the one atomic writer gives its temp file (renderlab.base.atomic.target), as a kill leaves it.
    shutil.copy(video / "tiny_main.mp4", video / ".tiny_main.mp4.k3j9x0.tmp.mp4")
    shutil.copy(video / "tiny_main_contact.png", video / ".tiny_main_contact.png.a1b2.tmp.png")
    gallery.publish(root / "runs" / meta["run_id"], root / "gallery", meta)
    page_dir = root / "gallery" / "runs" / meta["run_id"]
    assert not [p for p in (page_dir / "media").iterdir() if p.name.startswith(".")]
    assert ".tmp" not in (page_dir / "index.html").read_text()
    assert set(json.loads((page_dir / "run.json").read_text())["variants"]) == {"main", "loop"}
