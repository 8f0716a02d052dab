"""The share layout: every path on the render share is built here and nowhere else.

<share>/assets/<project>/...                      synced depot workspace (the fetch Job writes it)
<share>/assets/<project>/.renderlab/manifest-<change>.json   verified file list, published last
<share>/runs/<run_id>/scene/                      .blend files, audio, timing report
<share>/runs/<run_id>/frames/<variant>/           rendered frames (variant: main or loop)
<share>/runs/<run_id>/video/<song>_<variant>.mp4  the MP4s, and <song>_<variant>_contact.png
<share>/runs/<run_id>/progress/<chunk>.json       each render task's progress (renderlab.base.progress)
<share>/runs/<run_id>/report/validation.json      the validation report
<share>/runs/<run_id>/report/notification-<state>.json   the notification record (success or failed)
<share>/runs/<run_id>/report/errors/<task>.json   each failed task's error, for the failure notification
<share>/gallery/index.html                        the render gallery: every published run, newest first
<share>/gallery/runs/<run_id>/                    a run's page (index.html, run.json, media/; while it
                                                  renders the live page and live/ thumbnails); the docs
                                                  server serves <share>/gallery read-only
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import PurePosixPath

# Where a Job's container sees the share (its working directory; the images' RENDERLAB_SHARE default).
SHARE_MOUNT = "/share"
TASK_ERRORS = "errors"  # in a run's report folder
# The rendered frames' file names inside frames/<variant>/ (printf/ffmpeg pattern: frame_000001.png).
FRAME_PATTERN = "frame_%06d.png"


def frame_name(number: int) -> str:
    return FRAME_PATTERN % number


_SAFE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.+-]{0,127}$")


def _segment(kind: str, value: str) -> str:
    if not _SAFE.fullmatch(value) or value in {".", ".."}:
        raise ValueError(
            f"{kind} {value!r} is not a safe path segment; use letters, digits and _.+- (max 128 characters)"
        )
    return value


@dataclass(frozen=True)
class ShareLayout:
    """Paths under one share root (the SMB mount in a pod, or a local folder for the local backend)."""

    root: PurePosixPath

    def assets(self, project: str) -> PurePosixPath:
        return self.root / "assets" / _segment("project", project)

    def manifest(self, project: str, change: int) -> PurePosixPath:
        return self.assets(project) / ".renderlab" / f"manifest-{int(change)}.json"

    def runs(self) -> PurePosixPath:
        return self.root / "runs"

    def run(self, run_id: str) -> PurePosixPath:
        return self.runs() / _segment("run id", run_id)

    def scene(self, run_id: str) -> PurePosixPath:
        return self.run(run_id) / "scene"

    def frames(self, run_id: str, variant: str = "main") -> PurePosixPath:
        return self.run(run_id) / "frames" / _segment("variant", variant)

    def video(self, run_id: str) -> PurePosixPath:
        return self.run(run_id) / "video"

    def progress(self, run_id: str) -> PurePosixPath:
        return self.run(run_id) / "progress"

    def report(self, run_id: str) -> PurePosixPath:
        return self.run(run_id) / "report"

    def gallery(self) -> PurePosixPath:
        return self.root / "gallery"

    def gallery_run(self, run_id: str) -> PurePosixPath:
        return self.gallery() / "runs" / _segment("run id", run_id)

    def video_file(self, run_id: str, song: str, variant: str) -> PurePosixPath:
        return self.video(run_id) / f"{_segment('song', song)}_{_segment('variant', variant)}.mp4"

    def contact_sheet(self, run_id: str, song: str, variant: str) -> PurePosixPath:
        return self.video(run_id) / f"{_segment('song', song)}_{_segment('variant', variant)}_contact.png"

    def validation_report(self, run_id: str) -> PurePosixPath:
        return self.report(run_id) / "validation.json"

    def notification_record(self, run_id: str, state: str) -> PurePosixPath:
        return self.report(run_id) / notification_name(state)

    def task_errors(self, run_id: str) -> PurePosixPath:
        return self.report(run_id) / TASK_ERRORS


def notification_name(state: str) -> str:
    """The notification record's file name in a run's report folder."""
    return f"notification-{_segment('state', state)}.json"
