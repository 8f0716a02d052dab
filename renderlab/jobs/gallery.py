"""Publish a run to the render gallery: static pages generated from what the run left on the share.

The DAG's last Job (same contract as the others: args in, files only under its output dir, one JSON line):

    python -m renderlab.jobs.gallery --run runs/<id> --out gallery --meta '{"run_id": ..., "song": ..., ...}'

Writes ``<out>/runs/<id>/`` (index.html with the MP4s in <video> players, the contact sheets, a timing-error
plot per note as inline SVG, the validation verdict, params and durations per task; run.json; media/) and
rewrites ``<out>/index.html`` (every published run, newest first). Every file is written under a temp name
and renamed, media first, then the page, then its record, so a page that is served is always whole and
everything it points at exists. A re-run with the same inputs writes nothing. The index is rebuilt under a lock, so two
runs publishing at once both end up listed.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import shutil
import stat
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from renderlab.base import atomic, cli
from renderlab.base.errors import CommandError
from renderlab.jobs import gallery_pages
from renderlab.jobs import gallery_records as records
from renderlab.jobs.gallery_pages import PAGE, index_page, run_page

RECORD = "run.json"
MEDIA = "media"
LIVE = "live"  # the live page's thumbnails while the run renders (renderlab.jobs.gallery_live)
LIVE_RECORD = "live.json"  # the run's progress for the index while it renders (records.Rendering)
MAX_RECORD_BYTES = 64 << 20  # a timing report of ~200,000 notes; bigger is not something the pipeline wrote
M = TypeVar("M", bound=BaseModel)
PUBLISHED_MODE = 0o644  # what the gallery writes is published: the docs server (another user) reads it


class GalleryError(CommandError):
    exit_code = 2


# --- reading the run -------------------------------------------------------------------------------------


def _warn(message: str) -> None:
    print(f"gallery: warning: {message}", file=sys.stderr)


def inside(run: Path, rel: str, folder: bool = False) -> os.stat_result | None:
    """The lstat of run/rel when it is a regular file (a real folder with `folder`) reached without passing
    through a link; None otherwise. Anyone who can write the share can put a link in a run folder: the
    gallery reads and publishes only what is really inside the run."""
    here = run
    st = None
    for part in rel.split("/") if rel else []:
        here = here / part
        try:
            st = os.lstat(here)
        except OSError:
            return None
        if stat.S_ISLNK(st.st_mode):
            _warn(
                f"{here} is a symbolic link; the gallery does not follow links out of the run, so it is skipped"
            )
            return None
    if st is None:
        return None
    wanted = stat.S_ISDIR if folder else stat.S_ISREG
    return st if wanted(st.st_mode) else None


def _open_regular(path: Path, expected: os.stat_result | None = None) -> int:
    """A descriptor on `path`, opened without following a link, refused unless it is a regular file (and the
    same file as `expected`, when given: nothing swapped it in between)."""
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    st = os.fstat(fd)
    if not stat.S_ISREG(st.st_mode) or (
        expected is not None and (st.st_dev, st.st_ino) != (expected.st_dev, expected.st_ino)
    ):
        os.close(fd)
        raise GalleryError(
            f"{path} is not a regular file inside the run (it changed while publishing); re-run"
        )
    return fd


def _read_json(run: Path, rel: str, what: str) -> Any:
    """The JSON value of run/rel (a regular file inside the run); None, with a warning, when it is absent,
    unreadable or not JSON: a damaged record only leaves its part of the page out."""
    path = run / rel
    st = inside(run, rel)
    if st is None:
        return None
    try:
        with open(_open_regular(path, st), "rb") as f:
            data = f.read(MAX_RECORD_BYTES + 1)
        if len(data) > MAX_RECORD_BYTES:
            raise ValueError(f"larger than {MAX_RECORD_BYTES >> 20} MiB")
        return json.loads(data.decode("utf-8"))
    except (OSError, GalleryError, ValueError, RecursionError) as e:
        _warn(f"{path}: the {what} is not readable JSON ({type(e).__name__}: {str(e)[:200]}); left out")
        return None


def read_record(run: Path, rel: str, model: type[M], what: str) -> M | None:
    """run/rel through its schema (renderlab.jobs.gallery_records); None, with a warning, when it fails."""
    value = _read_json(run, rel, what)
    if value is None:
        return None
    try:
        return model.model_validate(value)
    except ValidationError as e:
        _warn(f"{run / rel}: the {what} has the wrong shape ({records.why(e)}); left out")
        return None


def video_files(run: Path) -> dict[str, os.stat_result]:
    """The regular files of run/video by name (links, devices and folders left out, with a warning; hidden
    temp files left out)."""
    if inside(run, "video", folder=True) is None:
        return {}
    out = {}
    for name in sorted(os.listdir(run / "video")):
        # A hidden name is a writer's temp file (renderlab.base.atomic: `.<name>.<random>.tmp.mp4`), left by a
        # killed assemble: never a variant.
        if name.endswith((".mp4", ".png")) and not name.startswith("."):
            st = inside(run, f"video/{name}")
            if st is not None:
                out[name] = st
            elif not os.path.islink(run / "video" / name):
                _warn(f"{run / 'video' / name} is not a regular file; skipped")
    return out


def collect(run: Path, meta: records.Meta) -> dict:
    """Everything a run page shows, from the run folder (share layout) and the DAG's metadata."""
    if os.path.islink(run):
        raise GalleryError(
            f"run folder {run} is a symbolic link; the gallery publishes only a real run folder"
        )
    if not run.is_dir():
        raise GalleryError(f"run folder {run} does not exist; pass --run runs/<run id> on the share")
    song = str(meta.song or "")
    validation = read_record(run, "report/validation.json", records.Validation, "validation report")
    timing = read_record(run, "scene/report.json", records.TimingReport, "timing report")
    video = run / "video"
    variants: dict[str, dict] = {}
    files = video_files(run)
    found = sorted(
        (video / n for n in files if n.endswith(".mp4")), key=lambda p: (p.stem != f"{song}_main", p.name)
    )
    for mp4 in found:
        name = mp4.stem.removeprefix(f"{song}_") if song else mp4.stem
        info = meta.variants.get(name) or records.MetaVariant()
        checked = validation.variants.get(name) if validation else None
        probed = checked.video if checked else records.Probed()
        sheet = video / f"{mp4.stem}_contact.png"
        variants[name] = {
            "video": mp4,
            "contact_sheet": sheet if sheet.name in files else None,
            "frames": info.frames,
            "fps": info.fps,
            # What the run was asked to produce; the probed stream length is shown beside it.
            "duration_s": info.duration_s or probed.video_duration_s,
            "probed_video_s": probed.video_duration_s,
            "probed_audio_s": probed.audio_duration_s,
        }
    return {
        "meta": meta.model_dump(),
        "validation": validation.model_dump() if validation else None,
        "timing": {
            "max_error_s": timing.max_timing_error_s if timing else None,
            "threshold_ms": validation.timing.threshold_ms if validation else None,
            "notes": records.notes_of(timing) if timing else [],
        },
        "visibility": records.visibility_of(timing, lambda m: _warn(f"{run / 'scene/report.json'}: {m}"))
        if timing
        else {},
        "variants": variants,
    }


def inputs_digest(run: Path, meta: dict) -> str:
    """Changes when the metadata or any file the page is made from changes (path, size, mtime)."""
    h = hashlib.sha256(json.dumps(meta, sort_keys=True, default=str).encode())
    for rel in ("report/validation.json", "scene/report.json"):
        if st := inside(run, rel):
            h.update(f"{rel}\0{st.st_size}\0{st.st_mtime_ns}\0".encode())
    for name, st in video_files(run).items():
        h.update(f"video/{name}\0{st.st_size}\0{st.st_mtime_ns}\0".encode())
    for code in (__file__, gallery_pages.__file__):  # a new page design republishes
        h.update(Path(code).read_bytes())
    return h.hexdigest()


# --- writing ---------------------------------------------------------------------------------------------


def publish_media(src: Path, dst: Path) -> bool:
    """Put `src` at `dst` (a hard link where the share allows, else a copy); False when already there.

    `src` is opened without following a link and must be a regular file; the copy is made from that
    descriptor, and a hard link is kept only if it names the very file that was opened."""
    fd = _open_regular(src)
    try:
        s = os.fstat(fd)
        with contextlib.suppress(OSError):
            d = os.lstat(dst)
            if stat.S_ISREG(d.st_mode) and (
                (d.st_ino == s.st_ino and d.st_dev == s.st_dev)
                or (d.st_size == s.st_size and d.st_mtime_ns == s.st_mtime_ns)
            ):
                return False
        with atomic.target(dst, mode=PUBLISHED_MODE) as tmp:
            tmp.unlink()
            linked = False
            # A hard link shares the file's mode: only a file the server may already read is linked.
            if s.st_mode & 0o004:
                with contextlib.suppress(OSError):  # no hard links here (or across devices): copy
                    os.link(src, tmp, follow_symlinks=False)
                    t = os.lstat(tmp)
                    linked = (t.st_dev, t.st_ino) == (s.st_dev, s.st_ino)
            if not linked:
                tmp.unlink(missing_ok=True)
                out_fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, PUBLISHED_MODE)
                with open(out_fd, "wb") as out, open(os.dup(fd), "rb") as f:
                    shutil.copyfileobj(f, out, 1 << 20)
                    os.fchmod(out.fileno(), PUBLISHED_MODE)
                os.utime(tmp, ns=(s.st_atime_ns, s.st_mtime_ns))
    finally:
        os.close(fd)
    return True


def write_text_if_changed(path: Path, text: str) -> bool:
    try:
        if path.read_text(encoding="utf-8") == text:
            return False
    except OSError:
        pass
    with atomic.target(path, mode=PUBLISHED_MODE) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return True


@contextlib.contextmanager
def locked(folder: Path) -> Iterator[None]:
    folder.mkdir(parents=True, exist_ok=True)
    with (folder / ".lock").open("a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def publish(run: Path, out: Path, meta_doc: dict) -> dict:
    start = time.monotonic()
    try:
        meta = records.Meta.model_validate(meta_doc)
    except ValidationError as e:
        raise GalleryError(f"--meta has the wrong shape: {records.why(e)}") from None
    if not records.run_id_ok(run.name):
        raise GalleryError(
            f"--run {run}: {run.name!r} is not a run folder's name; pass --run runs/<run id> on the share"
        )
    run_id = meta.run_id or run.name
    if run_id != run.name:
        raise GalleryError(f"--meta run_id {run_id!r} is not the run folder's name {run.name!r}")
    page_dir = out / "runs" / run_id
    digest = inputs_digest(run, meta_doc)
    previous = _read_json(page_dir, RECORD, "gallery record")  # a damaged record of our own: publish again
    written: list[str] = []
    if isinstance(previous, dict) and previous.get("inputs") == digest and (page_dir / PAGE).is_file():
        record = previous
    else:
        data = collect(run, meta)
        media: dict[str, dict[str, str | None]] = {}
        for name, v in data["variants"].items():
            entry: dict[str, str | None] = {"video": f"{MEDIA}/{v['video'].name}", "contact_sheet": None}
            if publish_media(v["video"], page_dir / MEDIA / v["video"].name):
                written.append(str(page_dir / MEDIA / v["video"].name))
            if v["contact_sheet"] is not None:
                entry["contact_sheet"] = f"{MEDIA}/{v['contact_sheet'].name}"
                if publish_media(v["contact_sheet"], page_dir / MEDIA / v["contact_sheet"].name):
                    written.append(str(page_dir / MEDIA / v["contact_sheet"].name))
            media[name] = entry
        validation = data["validation"] or {}
        record = {
            "run_id": run_id,
            "song": meta.song,
            "changelist": meta.changelist,
            "started": meta.started,
            "published": datetime.now(UTC).isoformat(timespec="seconds"),
            "ok": validation.get("ok"),
            "problems": validation.get("problems") or [],
            "variants": {
                name: {
                    **{k: v[k] for k in ("frames", "fps", "duration_s", "probed_video_s", "probed_audio_s")},
                    **media[name],
                }
                for name, v in data["variants"].items()
            },
            "max_timing_error_ms": _ms(data["timing"]["max_error_s"]),
            "notes": len(data["timing"]["notes"]),
            "strikes_visible": {
                scene: {k: v[k] for k in ("strikes", "visible", "median_px")}
                for scene, v in data["visibility"].items()
            },
            "inputs": digest,
        }
        # Media, then the page, then the record: the record (with the inputs' digest) says "published", so a
        # crash before it makes the next run publish again.
        write_text_if_changed(page_dir / PAGE, run_page(data, media))
        atomic.write_json(page_dir / RECORD, record, mode=PUBLISHED_MODE)
        written += [str(page_dir / PAGE), str(page_dir / RECORD)]
    if remove_live(page_dir):
        written.append(str(page_dir / LIVE))
    with locked(out):
        listed, changed = write_index(out)
        if changed:
            written.append(str(out / PAGE))
    return {
        "page": str(page_dir / PAGE),
        "index": str(out / PAGE),
        "runs": listed,
        "written": written,
        "up_to_date": not written,
        "seconds": round(time.monotonic() - start, 3),
    }


def remove_live(page_dir: Path) -> bool:
    """The finished page has no live view: the thumbnails the render wrote and its index record go (a link
    there is only unlinked, never followed). False when there were none."""
    live = page_dir / LIVE
    had_record = os.path.lexists(page_dir / LIVE_RECORD)
    (page_dir / LIVE_RECORD).unlink(missing_ok=True)
    try:
        st = os.lstat(live)
    except OSError:
        return had_record
    if stat.S_ISDIR(st.st_mode):
        shutil.rmtree(live, ignore_errors=True)
    else:
        live.unlink(missing_ok=True)
    return True


def index_records(out: Path) -> list[dict]:
    """Every run with a page: the ones still rendering first (their live record: frames done of total, the
    ETA), then the published ones (a page and its record), each newest first. A record of the wrong shape (the
    share is writable by others) hides that run from the index with a warning; its own page still stands."""
    found, rendering = [], []
    runs = out / "runs"
    for name in sorted(os.listdir(runs)) if inside(out, "runs", folder=True) else []:
        if not inside(runs, f"{name}/{PAGE}"):
            continue
        if inside(runs, f"{name}/{RECORD}"):
            record: Any = read_record(runs / name, RECORD, records.Published, "gallery record")
        elif inside(runs, f"{name}/{LIVE_RECORD}"):
            record = read_record(runs / name, LIVE_RECORD, records.Rendering, "live record")
        else:
            continue
        if record is None:
            continue
        if record.run_id != name:
            _warn(
                f"{runs / name}: its record names run {record.run_id!r}, not {name!r}; left out of the index"
            )
            continue
        if isinstance(record, records.Rendering):
            rendering.append({"run_id": name, "song": record.title, "started": record.updated, "ok": None,
                              "rendering": {k: getattr(record, k) for k in ("done", "total", "eta")}})  # fmt: skip
        else:
            found.append(record.model_dump())

    def newest_first(rs: list[dict]) -> list[dict]:
        return sorted(
            rs, key=lambda r: (str(r["started"] or r.get("published") or ""), r["run_id"]), reverse=True
        )

    return newest_first(rendering) + newest_first(found)


def write_index(out: Path) -> tuple[int, bool]:
    """The index page from every run's record (under `locked(out)`): (runs listed, whether it changed)."""
    runs = index_records(out)
    return len(runs), write_text_if_changed(out / PAGE, index_page(runs))


# --- numbers ---------------------------------------------------------------------------------------------


def _ms(seconds: Any) -> float | None:
    return round(float(seconds) * 1000, 4) if isinstance(seconds, int | float) else None


# --- CLI -------------------------------------------------------------------------------------------------


@cli.command("gallery")
def main(argv: list[str] | None = None) -> int:
    ap = cli.Parser(prog="python -m renderlab.jobs.gallery", description=__doc__.split("\n")[0])
    ap.add_argument("--run", type=Path, required=True, help="the run folder on the share: runs/<run id>")
    ap.add_argument("--out", type=Path, required=True, help="the gallery folder on the share: gallery")
    ap.add_argument("--meta", default="{}", help="JSON: song, changelist, params, durations, started, ...")
    a = ap.parse_args(argv)
    try:
        meta = json.loads(a.meta)
    except json.JSONDecodeError as e:
        raise GalleryError(f"--meta is not JSON: {e}") from None
    if not isinstance(meta, dict):
        raise GalleryError("--meta must be a JSON object")
    try:
        result = publish(a.run, a.out, meta)
    except OSError as e:
        raise CommandError(f"cannot write the gallery under {a.out}: {e}") from None
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
