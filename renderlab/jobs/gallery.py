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
import html
import json
import os
import shutil
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from renderlab.base import atomic, cli

PAGE = "index.html"
RECORD = "run.json"
MEDIA = "media"
# Shown per run, in this order, when the DAG's params carry them.
PARAM_KEYS = ("preset", "frames", "fps", "samples", "resolution_percentage", "frames_per_chunk", "loop")
PALETTE = (
    "#4e79a7",
    "#f28e2b",
    "#e15759",
    "#76b7b2",
    "#59a14f",
    "#edc948",
    "#b07aa1",
    "#ff9da7",
    "#9c755f",
    "#bab0ac",
    "#1f77b4",
    "#2ca02c",
    "#9467bd",
    "#8c564b",
    "#17becf",
    "#bcbd22",
)


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


# --- HTML and SVG ----------------------------------------------------------------------------------------

CSS = """
body{font-family:system-ui,sans-serif;margin:0;background:#f7f7f9;color:#1d1d22}
header{background:#263238;color:#fff;padding:.8rem 1.5rem;display:flex;gap:1.5rem;align-items:baseline}
header a{color:#cfd8dc}main{max-width:64rem;margin:0 auto;padding:1rem 1.5rem}
table{border-collapse:collapse;margin:.5rem 0 1.5rem}td,th{padding:.25rem .8rem;border-bottom:1px solid #ddd;
text-align:left;vertical-align:top}.ok{color:#1b7f3b;font-weight:600}.bad{color:#b3261e;font-weight:600}
video,img.sheet{width:100%;max-width:48rem;background:#000;display:block;margin:.3rem 0 1rem}
figure{margin:0 0 1.5rem}figcaption{color:#555;font-size:.9rem}img.thumb{width:12rem}
"""


def _esc(value: Any) -> str:
    return html.escape("" if value is None else str(value))


def _ms(seconds: Any) -> float | None:
    return round(float(seconds) * 1000, 4) if isinstance(seconds, int | float) else None


def _doc(title: str, body: str, home: str) -> str:
    return (
        '<!doctype html>\n<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width,initial-scale=1"><link rel="icon" href="data:,">'
        f"<title>{_esc(title)}</title><style>{CSS}</style></head><body>"
        f'<header><strong>renderlab gallery</strong><a href="{home}index.html">all runs</a>'
        f'<a href="{home}../index.html">documentation</a></header>'
        f"<main>{body}</main></body></html>\n"
    )


def _verdict(ok: Any, attrs: str = ' id="verdict"') -> str:
    if ok is True:
        return f'<span class="ok"{attrs}>passed</span>'
    if ok is False:
        return f'<span class="bad"{attrs}>failed</span>'
    return f"<span{attrs}>not validated</span>"


def run_page(data: dict, media: dict[str, dict[str, str | None]]) -> str:
    meta = data["meta"]
    validation = data["validation"] or {}
    params = meta.get("params") or {}
    rows = [
        ("song", meta.get("song")),
        ("changelist", meta.get("changelist")),
        ("run", meta.get("run_id")),
        ("Airflow run", meta.get("airflow_run_id")),
        ("backend", meta.get("backend")),
        ("started", meta.get("started")),
    ] + [(k, params[k]) for k in PARAM_KEYS if k in params]
    facts = "".join(f"<tr><th>{_esc(k)}</th><td>{_esc(v)}</td></tr>" for k, v in rows if v is not None)
    durations = meta.get("durations") or {}
    dur_rows = "".join(
        f"<tr><td>{_esc(task)}</td><td>{float(s):.1f} s</td></tr>"
        for task, s in durations.items()
        if isinstance(s, int | float)
    )
    total = sum(s for s in durations.values() if isinstance(s, int | float))
    problems = "".join(f"<li>{_esc(p)}</li>" for p in validation.get("problems") or [])
    parts = [
        f"<h1>{_esc(meta.get('song'))} <small>{_esc(meta.get('run_id'))}</small></h1>",
        f"<p>Validation: {_verdict(validation.get('ok'))}</p>",
        f"<ul>{problems}</ul>" if problems else "",
    ]
    for name, v in data["variants"].items():
        m = media[name]
        title = "The render" if name == "main" else ("The loop" if name == "loop" else name)
        loop_attr = " loop" if name == "loop" else ""
        dur = v.get("duration_s")
        caption = f"{_esc(v.get('frames'))} frames at {_esc(v.get('fps'))} fps" + (
            f", {float(dur):.3f} s" if isinstance(dur, int | float) else ""
        )
        parts.append(
            f'<h2>{title}</h2><figure><video id="video-{_esc(name)}" controls preload="metadata"{loop_attr}'
            f' data-duration="{_esc(dur)}" src="{_esc(m["video"])}"></video>'
            f'<figcaption>{caption} (<a href="{_esc(m["video"])}">MP4 with audio</a>)</figcaption></figure>'
        )
        if m.get("contact_sheet"):
            parts.append(
                f'<figure><img class="sheet" src="{_esc(m["contact_sheet"])}" alt="contact sheet of the {_esc(name)} render">'
                f"<figcaption>contact sheet ({_esc(name)})</figcaption></figure>"
            )
    if not data["variants"]:
        parts.append("<p>This run rendered no video (render=false): only the scene was built.</p>")
    parts.append("<h2>Timing error per note</h2>")
    parts.append(timing_svg(data["timing"]))
    parts.append(f"<h2>Run</h2><table>{facts}</table>")
    if dur_rows:
        parts.append(
            f'<h2>Durations per task</h2><table id="durations">{dur_rows}'
            f"<tr><th>total</th><th>{total:.1f} s</th></tr></table>"
        )
    return _doc(f"{meta.get('song')} - {meta.get('run_id')}", "".join(parts), "../../")


def index_page(runs: list[dict]) -> str:
    rows = []
    for r in runs:
        main = (r.get("variants") or {}).get("main") or {}
        link = f"runs/{_esc(r['run_id'])}/{PAGE}"
        thumb = (
            f'<img class="thumb" src="runs/{_esc(r["run_id"])}/{_esc(main["contact_sheet"])}" alt="">'
            if main.get("contact_sheet")
            else ""
        )
        dur = main.get("duration_s")
        length = f"{float(dur):.2f} s" if isinstance(dur, int | float) else "-"
        rows.append(
            f'<tr class="run"><td><a href="{link}">{_esc(r.get("song"))}</a><br>'
            f"<small>{_esc(r['run_id'])}</small></td>"
            f"<td>{_esc(r.get('started') or r.get('published'))}</td><td>{_verdict(r.get('ok'), '')}</td>"
            f"<td>{length}</td><td>{thumb}</td></tr>"
        )
    body = "<h1>Render gallery</h1><p>Every published run, newest first.</p>" + (
        "<table><tr><th>song / run</th><th>started</th><th>validation</th><th>length</th><th></th></tr>"
        + "".join(rows)
        + "</table>"
        if rows
        else "<p>No run has been published yet.</p>"
    )
    return _doc("renderlab gallery", body, "")


def timing_svg(timing: dict, width: int = 800, height: int = 280) -> str:
    """A dot per note: x its time in the song, y its impact timing error (ms); colour per instrument."""
    notes = timing["notes"]
    if not notes:
        return "<p>No timing report for this run.</p>"
    elements = sorted({str(n.get("element") or "?") for n in notes})
    # The legend is a column beside the plot: grow the figure to hold every instrument.
    left, right, top, bottom = 70, 200, 20, 40
    height = max(height, top + 16 * len(elements) + 8 + bottom)
    pw, ph = width - left - right, height - top - bottom
    t_max = max(n["time"] for n in notes) or 1.0
    errs = [n["error"] * 1000 for n in notes]
    lo = min(0.0, *errs)
    hi = max(errs)
    span = (hi - lo) or max(abs(hi), 1e-6)
    hi, lo = hi + span * 0.08, lo - (span * 0.08 if lo < 0 else 0)

    def x(t: float) -> float:
        return left + pw * t / t_max

    def y(ms: float) -> float:
        return top + ph * (1 - (ms - lo) / (hi - lo))

    color = {e: PALETTE[i % len(PALETTE)] for i, e in enumerate(elements)}
    out = [
        f'<svg id="timing-plot" xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" role="img" aria-label="timing error per note" font-size="11">',
        f'<rect x="{left}" y="{top}" width="{pw}" height="{ph}" fill="#fff" stroke="#999"/>',
    ]
    for i in range(5):
        ms = lo + (hi - lo) * i / 4
        out.append(f'<line x1="{left}" x2="{left + pw}" y1="{y(ms):.1f}" y2="{y(ms):.1f}" stroke="#eee"/>')
        out.append(f'<text x="{left - 6}" y="{y(ms) + 4:.1f}" text-anchor="end">{ms:.4g}</text>')
        t = t_max * i / 4
        out.append(f'<text x="{x(t):.1f}" y="{top + ph + 16}" text-anchor="middle">{t:.3g}</text>')
    out.append(
        f'<text x="{left + pw / 2}" y="{height - 6}" text-anchor="middle">note time in the song (s)</text>'
    )
    out.append(
        f'<text transform="translate(14 {top + ph / 2}) rotate(-90)" text-anchor="middle">timing error (ms)</text>'
    )
    for n, ms in zip(notes, errs, strict=True):
        el = str(n.get("element") or "?")
        out.append(
            f'<circle class="note" cx="{x(n["time"]):.2f}" cy="{y(ms):.2f}" r="3" fill="{color[el]}">'
            f"<title>note {_esc(n.get('index'))} {_esc(n.get('track_name'))} pitch {_esc(n.get('pitch'))} "
            f"at {n['time']:.3f} s on {_esc(el)}: {ms:.4f} ms</title></circle>"
        )
    for i, el in enumerate(elements):
        ly = top + 12 + i * 16
        out.append(f'<circle cx="{left + pw + 16}" cy="{ly - 4}" r="4" fill="{color[el]}"/>')
        out.append(f'<text x="{left + pw + 26}" y="{ly}">{_esc(el)}</text>')
    out.append("</svg>")
    summary = f"{len(notes)} notes; worst {max(abs(e) for e in errs):.4f} ms"
    if timing.get("threshold_ms") is not None:
        summary += f" (threshold {float(timing['threshold_ms']):.2f} ms)"
    return "".join(out) + f'<p id="timing-summary">{summary}</p>'


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
