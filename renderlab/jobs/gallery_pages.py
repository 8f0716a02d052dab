"""The gallery's HTML and SVG: one templating path, Jinja2 with autoescape on.

Everything shown comes from the share, the song or the DAG's params (file names, track names, problems,
run ids), so none of it is ever pasted into markup: the templates below are the only place HTML is made,
every value goes through autoescape, and values used in a URL are percent-encoded first (`urlencode`).
Numbers are formatted here, in Python, before they reach a template.
"""

from __future__ import annotations

import math
from typing import Any

from jinja2 import DictLoader, Environment, StrictUndefined

PAGE = "index.html"
# Shown per run, in this order, when the DAG's params carry them.
PARAM_KEYS = ("preset", "frames", "fps", "samples", "resolution_percentage", "frames_per_chunk", "loop")
# The showcase bar (tests/blender/test_visibility.py gates builds on it); the page marks a scene below it.
GATE_FRACTION, GATE_PX = 0.95, 16.0
PALETTE = (
    "#4e79a7", "#f28e2b", "#e15759", "#76b7b2", "#59a14f", "#edc948", "#b07aa1", "#ff9da7",
    "#9c755f", "#bab0ac", "#1f77b4", "#2ca02c", "#9467bd", "#8c564b", "#17becf", "#bcbd22",
)  # fmt: skip

_TEMPLATES = {
    "base.html": """<!doctype html>
<html lang="en"><head><meta charset="utf-8">\
<meta name="viewport" content="width=device-width,initial-scale=1"><link rel="icon" href="data:,">\
<title>{{ title }}</title>{% block head %}{% endblock %}<style>
body{font-family:system-ui,sans-serif;margin:0;background:#f7f7f9;color:#1d1d22}
header{background:#263238;color:#fff;padding:.8rem 1.5rem;display:flex;gap:1.5rem;align-items:baseline}
header a{color:#cfd8dc}main{max-width:64rem;margin:0 auto;padding:1rem 1.5rem}
table{border-collapse:collapse;margin:.5rem 0 1.5rem}td,th{padding:.25rem .8rem;border-bottom:1px solid #ddd;
text-align:left;vertical-align:top}.ok{color:#1b7f3b;font-weight:600}.bad{color:#b3261e;font-weight:600}
video,img.sheet{width:100%;max-width:48rem;background:#000;display:block;margin:.3rem 0 1rem}
figure{margin:0 0 1.5rem}figcaption{color:#555;font-size:.9rem}img.thumb{width:12rem}
progress{width:100%;max-width:48rem;height:1.2rem}
</style></head><body>\
<header><strong>renderlab gallery</strong><a href="{{ home }}index.html">all runs</a>\
<a href="{{ home }}../index.html">documentation</a></header>\
<main>{% block main %}{% endblock %}</main></body></html>
""",
    "verdict.html": """{% macro verdict(ok, id=none) -%}
{% set attrs %}{% if id %} id="{{ id }}"{% endif %}{% endset -%}
{% if ok is sameas true %}<span class="ok"{{ attrs }}>passed</span>\
{% elif ok is sameas false %}<span class="bad"{{ attrs }}>failed</span>\
{% else %}<span{{ attrs }}>not validated</span>{% endif %}
{%- endmacro %}""",
    "run.html": """{% extends "base.html" %}{% from "verdict.html" import verdict %}{% block main -%}
<h1>{{ song }} <small>{{ run_id }}</small></h1>\
<p>Validation: {{ verdict(ok, "verdict") }}</p>\
{% if problems %}<ul>{% for p in problems %}<li>{{ p }}</li>{% endfor %}</ul>{% endif %}\
{% for v in variants %}\
<h2>{{ v.title }}</h2><figure><video id="video-{{ v.name }}" controls preload="metadata"\
{% if v.loop %} loop{% endif %} data-duration="{{ v.duration }}" src="{{ v.video|urlencode }}"></video>\
<figcaption>{{ v.frames }} frames at {{ v.fps }} fps{{ v.length }} \
(<a href="{{ v.video|urlencode }}">MP4 with audio</a>)</figcaption></figure>\
{% if v.contact_sheet %}<figure><img class="sheet" src="{{ v.contact_sheet|urlencode }}" \
alt="contact sheet of the {{ v.name }} render"><figcaption>contact sheet ({{ v.name }})</figcaption></figure>\
{% endif %}{% else %}<p>This run rendered no video (render=false): only the scene was built.</p>{% endfor %}\
<h2>Timing error per note</h2>{% include "timing.svg" %}\
<h2>Strikes seen</h2>{% include "visibility.html" %}\
<h2>Run</h2><table>{% for k, v in facts %}<tr><th>{{ k }}</th><td>{{ v }}</td></tr>{% endfor %}</table>\
{% if durations %}<h2>Durations per task</h2><table id="durations">\
{% for task, s in durations %}<tr><td>{{ task }}</td><td>{{ s }}</td></tr>{% endfor %}\
<tr><th>total</th><th>{{ total }}</th></tr></table>{% endif %}
{%- endblock %}""",
    "timing.svg": """{% if not plot %}<p>No timing report for this run.</p>{% else -%}
<svg id="timing-plot" xmlns="http://www.w3.org/2000/svg" width="{{ plot.width }}" height="{{ plot.height }}" \
viewBox="0 0 {{ plot.width }} {{ plot.height }}" role="img" aria-label="timing error per note" font-size="11">\
<rect x="{{ plot.left }}" y="{{ plot.top }}" width="{{ plot.pw }}" height="{{ plot.ph }}" fill="#fff" stroke="#999"/>\
{% for g in plot.grid %}<line x1="{{ plot.left }}" x2="{{ plot.right_x }}" y1="{{ g.y }}" y2="{{ g.y }}" stroke="#eee"/>\
<text x="{{ plot.left - 6 }}" y="{{ g.label_y }}" text-anchor="end">{{ g.ms }}</text>\
<text x="{{ g.x }}" y="{{ plot.top + plot.ph + 16 }}" text-anchor="middle">{{ g.t }}</text>{% endfor %}\
<text x="{{ plot.mid_x }}" y="{{ plot.height - 6 }}" text-anchor="middle">note time in the song (s)</text>\
<text transform="translate(14 {{ plot.mid_y }}) rotate(-90)" text-anchor="middle">timing error (ms)</text>\
{% for n in plot.notes %}<circle class="note" cx="{{ n.cx }}" cy="{{ n.cy }}" r="3" fill="{{ n.color }}">\
<title>note {{ n.index }} {{ n.track }} pitch {{ n.pitch }} at {{ n.time }} s on {{ n.element }}: {{ n.ms }} ms\
</title></circle>{% endfor %}\
{% for e in plot.legend %}<circle cx="{{ plot.right_x + 16 }}" cy="{{ e.y - 4 }}" r="4" fill="{{ e.color }}"/>\
<text x="{{ plot.right_x + 26 }}" y="{{ e.y }}">{{ e.element }}</text>{% endfor %}</svg>\
<p id="timing-summary">{{ plot.summary }}</p>{% endif %}""",
    "live.html": """{% extends "base.html" %}{% block head %}\
<meta http-equiv="refresh" content="{{ refresh_s }}">{% endblock %}{% block main -%}
<h1>{{ title }} <small>rendering</small></h1>\
<p id="live-progress"><span id="frames-done">{{ done }}</span> of <span id="frames-total">{{ total }}</span> \
frames done; about <span id="eta">{{ eta }}</span> to go. This page reloads itself every {{ refresh_s }} s; \
the run's page replaces it when the run is published.</p><progress max="{{ total }}" value="{{ done }}"></progress>\
{% if chunks %}<table id="chunks"><tr><th>render task</th><th>done</th><th>s/frame</th><th>to go</th>\
<th>newest frame</th></tr>{% for c in chunks %}<tr class="chunk"><td>{{ c.label }}</td><td>{{ c.done }}</td>\
<td>{{ c.per_frame }}</td><td>{{ c.eta }}</td><td>{% if c.thumb %}<img class="thumb" src="{{ c.thumb|urlencode }}\
?frame={{ c.newest }}" alt="frame {{ c.newest }}"><br><small>frame {{ c.newest }}</small>{% endif %}</td></tr>\
{% endfor %}</table>{% else %}<p>No render task has reported yet.</p>{% endif %}
{%- endblock %}""",
    "visibility.html": """{% if not seen %}<p>No strike-visibility figure for this run.</p>{% else -%}
<table id="visibility"><tr><th>scene</th><th>strikes visible</th><th>median marble at 1080p</th>\
<th>smallest</th><th>worst passages</th></tr>\
{% for s in seen %}<tr id="visibility-{{ s.scene }}"><td>{{ s.title }}</td>\
<td><strong class="{{ s.verdict }}">{{ s.percent }}</strong> ({{ s.visible }} of {{ s.strikes }})</td><td>{{ s.median }}</td>\
<td>{{ s.smallest }}</td><td>{% for p in s.passages %}{{ p }}{% if not loop.last %}<br>{% endif %}\
{% else %}-{% endfor %}</td></tr>{% endfor %}</table>\
<p>A strike is visible when its marble is inside the frame (3% margin) and not hidden, at the frame that \
shows it; the gate is {{ gate }}.</p>{% endif %}""",
    "index.html": """{% extends "base.html" %}{% from "verdict.html" import verdict %}{% block main -%}
<h1>Render gallery</h1><p>The runs still rendering, then every published run, newest first.</p>\
{% if runs %}<table><tr><th>song / run</th><th>started</th><th>validation</th><th>length</th><th></th></tr>\
{% for r in runs %}<tr class="run"><td><a href="runs/{{ r.run_id|urlencode }}/{{ page }}">{{ r.song }}</a><br>\
<small>{{ r.run_id }}</small></td><td>{{ r.started }}</td><td>{% if r.rendering %}<span class="rendering">\
rendering: {{ r.rendering.done }} of {{ r.rendering.total }} frames, about {{ r.rendering.eta }} to go</span>\
{% else %}{{ verdict(r.ok) }}{% endif %}</td><td>{{ r.length }}</td>\
<td>{% if r.thumb %}<img class="thumb" src="runs/{{ r.run_id|urlencode }}/{{ r.thumb|urlencode }}" alt="">\
{% endif %}</td></tr>{% endfor %}</table>{% else %}<p>No run has been published yet.</p>{% endif %}
{%- endblock %}""",
}

_ENV = Environment(
    loader=DictLoader(_TEMPLATES), autoescape=True, undefined=StrictUndefined, keep_trailing_newline=True
)


def _num(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _text(value: Any) -> str:
    return "" if value is None else str(value)


def run_page(data: dict, media: dict[str, dict[str, str | None]]) -> str:
    """The run's page: its videos, contact sheets, validation verdict, timing plot, facts and durations."""
    meta = data["meta"]
    validation = data["validation"] or {}
    params = meta.get("params") if isinstance(meta.get("params"), dict) else {}
    rows = [
        ("song", meta.get("song")),
        ("changelist", meta.get("changelist")),
        ("run", meta.get("run_id")),
        ("Airflow run", meta.get("airflow_run_id")),
        ("backend", meta.get("backend")),
        ("started", meta.get("started")),
    ] + [(k, params[k]) for k in PARAM_KEYS if k in params]
    durations = meta.get("durations") if isinstance(meta.get("durations"), dict) else {}
    timed = [(str(task), s) for task, s in durations.items() if _num(s)]
    variants = []
    for name, v in data["variants"].items():
        dur = v.get("duration_s")
        variants.append(
            {
                "name": name,
                "title": "The render" if name == "main" else ("The loop" if name == "loop" else name),
                "loop": name == "loop",
                "duration": _text(dur),
                "length": f", {float(dur):.3f} s" if _num(dur) else "",
                "frames": _text(v.get("frames")),
                "fps": _text(v.get("fps")),
                "video": media[name]["video"],
                "contact_sheet": media[name].get("contact_sheet"),
            }
        )
    problems = validation.get("problems")
    return _ENV.get_template("run.html").render(
        title=f"{meta.get('song')} - {meta.get('run_id')}",
        home="../../",
        song=_text(meta.get("song")),
        run_id=_text(meta.get("run_id")),
        ok=validation.get("ok"),
        problems=[_text(p) for p in problems] if isinstance(problems, list) else [],
        variants=variants,
        plot=_plot(data["timing"]),
        seen=_seen(data.get("visibility") or {}),
        gate=f"{GATE_FRACTION:.0%} visible, median marble {GATE_PX:g} px",
        facts=[(k, _text(v)) for k, v in rows if v is not None],
        durations=[(task, f"{float(s):.1f} s") for task, s in timed],
        total=f"{sum(s for _, s in timed):.1f} s",
    )


def live_page(*, title: str, done: int, total: int, eta: str, chunks: list[dict], refresh_s: int) -> str:
    """A run's page while it renders: frames done of total, the ETA, and per render task its newest frame.
    `chunks`: label, done, per_frame, eta, thumb (a relative URL or None), newest (frame number or None)."""
    return _ENV.get_template("live.html").render(
        title=title, home="../../", done=done, total=total, eta=eta, chunks=chunks, refresh_s=refresh_s
    )


def _seen(visibility: dict[str, dict]) -> list[dict]:
    """The strike-visibility rows (records already checked by gallery_records.StrikeVisibility): the
    fraction from the counts, numbers formatted here."""
    rows = []
    for scene in ("main", "loop"):
        v = visibility.get(scene)
        if not v:
            continue
        fraction = v["visible"] / v["strikes"] if v["strikes"] else 1.0
        ok = fraction >= GATE_FRACTION and v["median_px"] >= GATE_PX
        rows.append(
            {
                "scene": scene,
                "title": "the render" if scene == "main" else "the loop",
                "verdict": "ok" if ok else "bad",
                "percent": f"{math.floor(fraction * 1000) / 10:.1f}%",  # never rounds a miss up to 100%
                "visible": v["visible"],
                "strikes": v["strikes"],
                "median": f"{v['median_px']:.1f} px",
                "smallest": "-" if v.get("min_px") is None else f"{v['min_px']:.1f} px",
                "passages": [
                    f"{p['start_s']:.2f}-{p['end_s']:.2f} s: {p['visible']} of {p['strikes']}"
                    for p in v["worst_passages"]
                    if p["visible"] < p["strikes"]
                ],
            }
        )
    return rows


def index_page(runs: list[dict]) -> str:
    """The runs still rendering, then every published run, newest first (the records were read and checked by
    the gallery)."""
    shown = []
    for r in runs:
        main = (r.get("variants") or {}).get("main") or {}
        dur = main.get("duration_s")
        shown.append(
            {
                "run_id": r["run_id"],
                "song": _text(r.get("song")),
                "started": _text(r.get("started") or r.get("published")),
                "ok": r.get("ok"),
                "length": f"{float(dur):.2f} s" if _num(dur) else "-",
                "thumb": main.get("contact_sheet"),
                "rendering": r.get("rendering"),
            }
        )
    return _ENV.get_template("index.html").render(title="renderlab gallery", home="", runs=shown, page=PAGE)


def timing_svg(timing: dict) -> str:
    """The timing plot alone (the run page includes it)."""
    return _ENV.get_template("timing.svg").render(plot=_plot(timing))


def _plot(timing: dict, width: int = 800, height: int = 280) -> dict | None:
    """A dot per note: x its time in the song, y its impact timing error (ms); colour per instrument."""
    notes = timing["notes"]
    if not notes:
        return None
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
    grid = []
    for i in range(5):
        ms = lo + (hi - lo) * i / 4
        t = t_max * i / 4
        grid.append({"y": f"{y(ms):.1f}", "label_y": f"{y(ms) + 4:.1f}", "ms": f"{ms:.4g}", "x": f"{x(t):.1f}",
                     "t": f"{t:.3g}"})  # fmt: skip
    dots = []
    for n, ms in zip(notes, errs, strict=True):
        el = str(n.get("element") or "?")
        dots.append(
            {
                "cx": f"{x(n['time']):.2f}",
                "cy": f"{y(ms):.2f}",
                "color": color[el],
                "index": _text(n.get("index")),
                "track": _text(n.get("track_name")),
                "pitch": _text(n.get("pitch")),
                "time": f"{n['time']:.3f}",
                "element": el,
                "ms": f"{ms:.4f}",
            }
        )
    summary = f"{len(notes)} notes; worst {max(abs(e) for e in errs):.4f} ms"
    if _num(timing.get("threshold_ms")):
        summary += f" (threshold {float(timing['threshold_ms']):.2f} ms)"
    return {
        "width": width,
        "height": height,
        "left": left,
        "top": top,
        "pw": pw,
        "ph": ph,
        "right_x": left + pw,
        "mid_x": left + pw / 2,
        "mid_y": top + ph / 2,
        "grid": grid,
        "notes": dots,
        "legend": [{"y": top + 12 + i * 16, "color": color[e], "element": e} for i, e in enumerate(elements)],
        "summary": summary,
    }
