"""A run's gallery page while it renders (Flamenco's "last rendered" view): frames done of total, the ETA,
and per render task its newest finished frame as a thumbnail; the page reloads itself.

The render entrypoint calls `publish_live` after each frame with its chunk's progress folder and the run's
gallery folder (renderlab.base.share: runs/<id>/progress, gallery/runs/<id>). Every chunk's record is read
back through its schema (renderlab.base.progress: the share is hostile) and the page goes through the
gallery's one template engine (autoescape). The gallery Job replaces the page with the finished one when
the run is published, and removes the thumbnails. Meanwhile the gallery's index lists the run as rendering
(frames done of total, the ETA) from its live.json, rewritten with the page.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from renderlab.base import atomic, estimate, progress
from renderlab.jobs import gallery
from renderlab.jobs.gallery_pages import PAGE, live_page

LIVE = gallery.LIVE  # the thumbnails: live/<chunk key>.png in the run's gallery folder
REFRESH_S = 5
THUMB_WIDTH = 320


def thumb_path(page_dir: Path, key: str) -> Path:
    return page_dir / LIVE / f"{key}.png"


def publish_live(progress_dir: Path, page_dir: Path, title: str) -> Path:
    """Rewrite the run's page from every chunk's progress record; returns the page's path."""
    records = progress.read(progress_dir, warn=gallery._warn)
    run_frames = max((r.run_frames for r in records), default=0)
    done = sum(r.done for r in records)
    states = [estimate.ChunkState(r.done, r.total, r.per_frame_s) for r in records]
    chunks = []
    for r in records:
        shown = gallery.inside(page_dir, f"{LIVE}/{r.key}.png") is not None and r.newest_frame is not None
        chunks.append(
            {
                "label": f"frames {r.first}-{r.last}" + ("" if r.variant == "main" else f" ({r.variant})"),
                "done": f"{r.done} / {r.total}",
                "per_frame": "-" if r.per_frame_s is None else f"{r.per_frame_s:.1f} s",
                "eta": estimate.duration(r.eta_s),
                "thumb": f"{LIVE}/{r.key}.png" if shown else None,
                "newest": r.newest_frame,
            }
        )
    html = live_page(
        title=title,
        done=min(done, run_frames),
        total=run_frames,
        eta=estimate.duration(estimate.run_eta(states, run_frames)),
        chunks=chunks,
        refresh_s=REFRESH_S,
    )
    out = page_dir.parent.parent
    with gallery.locked(out):
        # The published record says "this page is final"; while a render runs it is not (a re-rendered run is
        # published again by its gallery task).
        (page_dir / gallery.RECORD).unlink(missing_ok=True)
        gallery.write_text_if_changed(page_dir / PAGE, html)
        # The index lists the run as rendering, with its progress, until the gallery task publishes it.
        record = {
            "run_id": page_dir.name, "title": title, "done": min(done, run_frames), "total": run_frames,
            "eta": estimate.duration(estimate.run_eta(states, run_frames)),
            "updated": datetime.now(UTC).isoformat(timespec="seconds"),
        }  # fmt: skip
        atomic.write_json(page_dir / gallery.LIVE_RECORD, record, mode=gallery.PUBLISHED_MODE)
        gallery.write_index(out)
    return page_dir / PAGE
