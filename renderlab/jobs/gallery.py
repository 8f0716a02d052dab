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
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from renderlab.jobs import atomic, cli
from renderlab.jobs.gallery_pages import PAGE, index_page, run_page

RECORD = "run.json"
MEDIA = "media"


class GalleryError(RuntimeError):
    pass


# --- reading the run -------------------------------------------------------------------------------------


def _read_json(path: Path, what: str) -> dict | None:
    if not path.is_file():
        return None
    try:
        value = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as e:
        raise GalleryError(
            f"{path}: the {what} is not readable JSON ({e}); re-run the step that wrote it"
        ) from e
    if not isinstance(value, dict):
        raise GalleryError(f"{path}: the {what} is not a JSON object; re-run the step that wrote it")
    return value


def collect(run: Path, meta: dict) -> dict:
    """Everything a run page shows, from the run folder (share layout) and the DAG's metadata."""
    if not run.is_dir():
        raise GalleryError(f"run folder {run} does not exist; pass --run runs/<run id> on the share")
    song = meta.get("song") or ""
    validation = _read_json(run / "report" / "validation.json", "validation report")
    timing = _read_json(run / "scene" / "report.json", "timing report")
    video = run / "video"
    variants: dict[str, dict] = {}
    found = (
        sorted(video.glob("*.mp4"), key=lambda p: (p.stem != f"{song}_main", p.name))
        if video.is_dir()
        else []
    )
    for mp4 in found:
        name = mp4.stem.removeprefix(f"{song}_") if song else mp4.stem
        info = (meta.get("variants") or {}).get(name, {})
        probed = ((validation or {}).get("variants") or {}).get(name, {}).get("video") or {}
        sheet = video / f"{mp4.stem}_contact.png"
        variants[name] = {
            "video": mp4,
            "contact_sheet": sheet if sheet.is_file() else None,
            "frames": info.get("frames"),
            "fps": info.get("fps"),
            # What the run was asked to produce; the probed stream length is shown beside it.
            "duration_s": info.get("duration_s") or probed.get("video_duration_s"),
            "probed_video_s": probed.get("video_duration_s"),
            "probed_audio_s": probed.get("audio_duration_s"),
        }
    notes = [
        {k: n.get(k) for k in ("index", "track_name", "pitch", "time", "element", "error")}
        for n in (timing or {}).get("notes") or []
        if isinstance(n.get("time"), int | float) and isinstance(n.get("error"), int | float)
    ]
    return {
        "meta": meta,
        "validation": validation,
        "timing": {
            "max_error_s": (timing or {}).get("max_timing_error_s"),
            "threshold_ms": ((validation or {}).get("timing") or {}).get("threshold_ms"),
            "notes": notes,
        },
        "variants": variants,
    }


def inputs_digest(run: Path, meta: dict) -> str:
    """Changes when the metadata or any file the page is made from changes (path, size, mtime)."""
    h = hashlib.sha256(json.dumps(meta, sort_keys=True, default=str).encode())
    for rel in ("report/validation.json", "scene/report.json"):
        p = run / rel
        if p.is_file():
            st = p.stat()
            h.update(f"{rel}\0{st.st_size}\0{st.st_mtime_ns}\0".encode())
    for p in sorted((run / "video").glob("*")) if (run / "video").is_dir() else []:
        if p.suffix in (".mp4", ".png"):
            st = p.stat()
            h.update(f"video/{p.name}\0{st.st_size}\0{st.st_mtime_ns}\0".encode())
    h.update(Path(__file__).read_bytes())  # a new page design republishes
    return h.hexdigest()


# --- writing ---------------------------------------------------------------------------------------------


def publish_media(src: Path, dst: Path) -> bool:
    """Put `src` at `dst` (a hard link where the share allows, else a copy); False when already there."""
    s = src.stat()
    if dst.is_file():
        d = dst.stat()
        if (d.st_ino == s.st_ino and d.st_dev == s.st_dev) or (
            d.st_size == s.st_size and d.st_mtime_ns == s.st_mtime_ns
        ):
            return False
    with atomic.target(dst) as tmp:
        tmp.unlink()
        try:
            os.link(src, tmp)
        except OSError:  # no hard links on this filesystem (or across devices): copy, keeping the mtime
            shutil.copy2(src, tmp)
    return True


def write_text_if_changed(path: Path, text: str) -> bool:
    try:
        if path.read_text(encoding="utf-8") == text:
            return False
    except OSError:
        pass
    with atomic.target(path) as tmp:
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


def publish(run: Path, out: Path, meta: dict) -> dict:
    start = time.monotonic()
    run_id = meta.get("run_id") or run.name
    if run_id != run.name:
        raise GalleryError(f"--meta run_id {run_id!r} is not the run folder's name {run.name!r}")
    page_dir = out / "runs" / run_id
    digest = inputs_digest(run, meta)
    try:
        previous = _read_json(page_dir / RECORD, "gallery record")
    except GalleryError:
        previous = None  # a damaged record of our own: publish the page again
    written: list[str] = []
    if previous and previous.get("inputs") == digest and (page_dir / PAGE).is_file():
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
            "song": meta.get("song"),
            "changelist": meta.get("changelist"),
            "started": meta.get("started"),
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
            "inputs": digest,
        }
        # Media, then the page, then the record: the record (with the inputs' digest) says "published", so a
        # crash before it makes the next run publish again.
        write_text_if_changed(page_dir / PAGE, run_page(data, media))
        atomic.write_json(page_dir / RECORD, record)
        written += [str(page_dir / PAGE), str(page_dir / RECORD)]
    with locked(out):
        runs = index_records(out)
        if write_text_if_changed(out / PAGE, index_page(runs)):
            written.append(str(out / PAGE))
    return {
        "page": str(page_dir / PAGE),
        "index": str(out / PAGE),
        "runs": len(runs),
        "written": written,
        "up_to_date": not written,
        "seconds": round(time.monotonic() - start, 3),
    }


def index_records(out: Path) -> list[dict]:
    """Every published run (a page and its record), newest first."""
    records = []
    for rec in (out / "runs").glob(f"*/{RECORD}"):
        if not (rec.parent / PAGE).is_file():
            continue
        try:
            value = json.loads(rec.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError):
            continue  # a damaged record hides that run from the index; its own page still stands
        records.append(value)
    return sorted(
        records, key=lambda r: (r.get("started") or r.get("published") or "", r["run_id"]), reverse=True
    )


# --- numbers ---------------------------------------------------------------------------------------------


def _ms(seconds: Any) -> float | None:
    return round(float(seconds) * 1000, 4) if isinstance(seconds, int | float) else None


# --- CLI -------------------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    ap = cli.Parser(prog="python -m renderlab.jobs.gallery", description=__doc__.split("\n")[0])
    ap.add_argument("--run", type=Path, required=True, help="the run folder on the share: runs/<run id>")
    ap.add_argument("--out", type=Path, required=True, help="the gallery folder on the share: gallery")
    ap.add_argument("--meta", default="{}", help="JSON: song, changelist, params, durations, started, ...")
    a = ap.parse_args(argv)
    try:
        meta = json.loads(a.meta)
        if not isinstance(meta, dict):
            raise GalleryError("--meta must be a JSON object")
        result = publish(a.run, a.out, meta)
    except json.JSONDecodeError as e:
        print(f"gallery: error: --meta is not JSON: {e}", file=sys.stderr)
        return 2
    except GalleryError as e:
        print(f"gallery: error: {e}", file=sys.stderr)
        return 2
    except OSError as e:
        print(f"gallery: error: cannot write the gallery under {a.out}: {e}", file=sys.stderr)
        return 1
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(cli.guard("gallery", main))
