"""What each task of the render DAG does (dags/render.py only wires these together).

Tasks build `JobSpec`s whose paths are relative to the share root and run them on the configured backend.
Everything heavy is imported inside the functions so that parsing the DAG does no work.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
from pathlib import Path, PurePosixPath
from typing import Any

from blender_scripts.presets import PRESETS  # a constant; the DAG's params read it too

log = logging.getLogger("renderlab.pipeline.steps")

PYTHON = "python"  # the image's interpreter; the local backend maps it to this venv's


def run_folder_id(airflow_run_id: str) -> str:
    """A share-safe run folder name from Airflow's run id (``manual__2026-01-01T00:00:00+00:00``)."""
    safe = re.sub(r"[^A-Za-z0-9_.+-]", "-", airflow_run_id).strip("-.") or "run"
    if len(safe) > 100 or safe != airflow_run_id:
        digest = hashlib.sha256(airflow_run_id.encode()).hexdigest()[:8]
        safe = f"{safe[:100]}-{digest}"
    return safe


def _label(value: str) -> str:
    """A Kubernetes label value (<= 63 chars) that still identifies the run."""
    v = re.sub(r"[^A-Za-z0-9_.-]", "-", value)
    if len(v) > 63:
        v = f"{v[:54]}-{hashlib.sha256(value.encode()).hexdigest()[:8]}"
    return v.strip("-_.") or "x"


def _layout():
    from renderlab.jobs.share import ShareLayout

    return ShareLayout(PurePosixPath("."))


def _settings(plan: dict):
    from renderlab.pipeline.settings import Settings

    return Settings.model_validate(plan["settings"])


def _run_job(plan: dict, spec_kwargs: dict, context: dict | None):
    from renderlab.pipeline import backends
    from renderlab.pipeline.jobspec import JobSpec

    labels = {"renderlab/run": _label(plan["run_id"]), **spec_kwargs.pop("labels", {})}
    spec = JobSpec(labels=labels, **spec_kwargs)
    return backends.get(_settings(plan)).run(spec, log, context)


def _resources(plan: dict, kind: str):
    from renderlab.pipeline.jobspec import Resources

    s = _settings(plan)
    if kind == "render":
        return Resources(cpu=s.cpu, memory=s.memory, gpu=s.gpu)
    if kind == "build":  # Blender on the CPU: the render's size, no GPU
        return Resources(cpu=s.cpu, memory=s.memory)
    return Resources(cpu="1", memory="2Gi")


# --- tasks -------------------------------------------------------------------------------------------


def plan(context: dict) -> dict:
    """Resolve the run: settings snapshot, run folder, share paths, effective parameters."""
    from renderlab.pipeline import settings as settings_mod

    params = dict(context["params"])
    s = settings_mod.load()
    frames = params.get("frames") or "all"
    if frames != "all":
        first, last = (int(x) for x in frames.split("-"))
        if first > last:
            raise ValueError(f"param frames={frames!r}: the first frame is after the last; use e.g. '1-240'")
    run_id = run_folder_id(context["run_id"])
    lay = _layout()
    song = params["song"]
    result = {
        "run_id": run_id,
        "airflow_run_id": context["run_id"],
        "song": song,
        "changelist": params.get("changelist", "latest"),
        "preset": params.get("preset") or s.preset,
        "samples": params.get("samples") or s.samples,
        "resolution_percentage": params.get("resolution_percentage") or 100,
        "frames": frames,
        "frames_per_chunk": params.get("frames_per_chunk") or s.frames_per_chunk,
        "loop": bool(params.get("loop")),
        "render": params.get("render", True) is not False,
        "notify": params.get("notify") or s.notify,
        "settings": s.model_dump(mode="json"),
        "paths": {
            "assets": str(lay.assets(song)),
            "run": str(lay.run(run_id)),
            "scene": str(lay.scene(run_id)),
            "frames": {v: str(lay.frames(run_id, v)) for v in ("main", "loop")},
            "video": str(lay.video(run_id)),
            "report": str(lay.report(run_id)),
        },
        "run_folder": str(Path(s.share_root) / lay.run(run_id)),
    }
    log.info("run %s: song %s, backend %s, run folder %s", run_id, song, s.backend, result["run_folder"])
    return result


def fetch_source(depot: str, song: str, changelist: Any) -> str:
    """The fetch image's --source: ``file:///abs/<song>[@N]`` or ``p4://[ssl:]H:P//path/<song>/...@N|latest``."""
    base = depot.rstrip("/")
    if base.startswith("file://"):
        return f"{base}/{song}" + ("" if changelist == "latest" else f"@{int(changelist)}")
    change = "latest" if changelist == "latest" else int(changelist)
    return f"{base}/{song}/...@{change}"


def fetch(plan: dict, context: dict | None = None) -> dict:
    s = _settings(plan)
    secrets = []
    if not s.depot.startswith("file://"):
        from renderlab.pipeline.jobspec import SecretRef

        secrets = [
            SecretRef(env="P4USER", secret=s.p4_secret, key="user"),
            SecretRef(env="P4PASSWD", secret=s.p4_secret, key="password"),
        ]
        if "://ssl:" in s.depot:
            secrets.append(SecretRef(env="P4TRUST_FINGERPRINT", secret=s.p4_secret, key="fingerprint"))
    source = fetch_source(s.depot, plan["song"], plan["changelist"])
    res = _run_job(
        plan,
        {
            "name": "fetch",
            "image": "fetch",
            "command": [PYTHON, "-m", "images.fetch", "--source", source, "--dest", plan["paths"]["assets"]],
            "secrets": secrets,
            "resources": _resources(plan, "fetch"),
            "backoff_limit": 1,
            "description": f"sync {source}",
        },
        context,
    )
    return {**res.result, "job_seconds": res.seconds}


def build(plan: dict, context: dict | None = None) -> dict:
    command = [PYTHON, "-m", "renderlab.jobs.build_step", "--project", plan["paths"]["assets"]]
    fps = PRESETS[plan["preset"]].fps or plan["settings"]["fps"]  # 1080p60, 4k60, vertical: built at 60
    command += ["--out", plan["paths"]["scene"], "--fps", str(fps)]
    res = _run_job(
        plan,
        {
            "name": "build",
            "image": "blender",
            "command": command,
            "resources": _resources(plan, "build"),
            "description": f"build the scene for {plan['song']}",
        },
        context,
    )
    return {**res.result, "job_seconds": res.seconds}


def _span(value: Any) -> tuple[int, int] | None:
    if isinstance(value, list | tuple) and len(value) == 2:
        return int(value[0]), int(value[1])
    return None


def chunks(plan: dict, built: dict) -> list[dict]:
    """Split the frames to render into chunks of frames_per_chunk, for the main and (if asked) loop scene."""
    if not plan["render"]:
        log.info("render=false: only the .blend files are built")
        return []
    variants: list[tuple[str, str, tuple[int, int]]] = []
    main = _span(built.get("frames"))
    if main is None:
        raise ValueError(f"build result has no frames [first, last]: {built.get('frames')!r}")
    if plan["frames"] != "all":
        a, b = (int(x) for x in plan["frames"].split("-"))
        lo, hi = max(a, main[0]), min(b, main[1])
        if lo > hi:
            raise ValueError(
                f"param frames={plan['frames']!r} is outside the song's frames {main[0]}-{main[1]}"
            )
        main = (lo, hi)
    variants.append(("main", built["blend"], main))
    if plan["loop"]:
        loop = _span(built.get("loop_frames"))
        if loop is None and isinstance(built.get("loop_frames"), int):
            loop = (1, int(built["loop_frames"]))
        if loop is None or not built.get("loop_blend"):
            raise ValueError("loop=true but the build produced no loop scene (loop_blend, loop_frames)")
        variants.append(("loop", built["loop_blend"], loop))
    size = int(plan["frames_per_chunk"])
    out = []
    for variant, blend, (first, last) in variants:
        for a in range(first, last + 1, size):
            b = min(a + size - 1, last)
            label = f"frames {a}-{b}" + ("" if variant == "main" else " (loop)")
            out.append({"variant": variant, "blend": blend, "first": a, "last": b, "label": label})
    log.info("%d chunk(s) of up to %d frames", len(out), size)
    return out


def render_command(plan: dict, chunk: dict) -> list[str]:
    return [
        PYTHON,
        "-m",
        "blender_scripts.render",
        "--blend",
        chunk["blend"],
        "--frames",
        f"{chunk['first']}-{chunk['last']}",
        "--out",
        plan["paths"]["frames"][chunk["variant"]],
        "--preset",
        plan["preset"],
        "--samples",
        str(plan["samples"]),
        "--resolution-percentage",
        str(plan["resolution_percentage"]),
        # A Job that asked for a GPU must get one (no silent CPU fallback); otherwise take what is there.
        "--device",
        "gpu" if plan["settings"].get("gpu") else "auto",
    ]


def render_chunk(plan: dict, chunk: dict, context: dict | None = None) -> dict:
    # The render entrypoint is resumable: a retry renders only frames that are missing or invalid.
    res = _run_job(
        plan,
        {
            "name": f"render-{chunk['variant']}-{chunk['first']}-{chunk['last']}",
            "image": "blender",
            "command": render_command(plan, chunk),
            "resources": _resources(plan, "render"),
            "labels": {"renderlab/chunk": f"{chunk['variant']}-{chunk['first']}-{chunk['last']}"},
            "description": chunk["label"],
        },
        context,
    )
    return {**chunk, "result": res.result, "job_seconds": res.seconds}


def _fps(plan: dict, built: dict) -> int:
    return int(built.get("fps") or plan["settings"]["fps"])


def _variant_spans(rendered: list[dict] | None) -> dict[str, tuple[int, int]]:
    spans: dict[str, tuple[int, int]] = {}
    for c in rendered or []:
        lo, hi = spans.get(c["variant"], (c["first"], c["last"]))
        spans[c["variant"]] = (min(lo, c["first"]), max(hi, c["last"]))
    return spans


def assemble(plan: dict, built: dict, rendered: list[dict] | None, context: dict | None = None) -> dict:
    spans = _variant_spans(rendered)
    if not spans:
        return {"variants": {}}
    fps = _fps(plan, built)
    song_first = (_span(built.get("frames")) or (1, 1))[0]
    video = PurePosixPath(plan["paths"]["video"])
    out: dict[str, Any] = {"variants": {}}
    for variant, (first, last) in sorted(spans.items()):
        offset = (first - song_first) / fps if variant == "main" else 0.0
        mp4 = video / f"{plan['song']}_{variant}.mp4"
        sheet = video / f"{plan['song']}_{variant}_contact.png"
        cmd = [PYTHON, "-m", "renderlab.jobs.assemble", "--frames", plan["paths"]["frames"][variant]]
        cmd += ["--first", str(first), "--last", str(last), "--fps", str(fps)]
        wav = built.get("wav") if variant == "main" else built.get("loop_wav") or built.get("wav")
        if wav:
            cmd += ["--audio", wav, "--audio-offset", f"{offset:.6f}"]
        cmd += ["--out", str(mp4), "--contact-sheet", str(sheet)]
        res = _run_job(
            plan,
            {
                "name": f"assemble-{variant}",
                "image": "blender",
                "command": cmd,
                "resources": _resources(plan, "assemble"),
            },
            context,
        )
        out["variants"][variant] = {**res.result, "first": first, "last": last, "fps": fps}
    return out


def validate(plan: dict, built: dict, assembled: dict | None, context: dict | None = None) -> dict:
    variants = {
        name: {
            "frames": plan["paths"]["frames"][name],
            "first": v["first"],
            "last": v["last"],
            "fps": v["fps"],
            "video": v["video"],
        }
        for name, v in ((assembled or {}).get("variants") or {}).items()
    }
    fps = _fps(plan, built)
    threshold = plan["settings"].get("timing_threshold_ms") or 1000 / fps
    spec = {"variants": variants, "timing_report": built.get("report"), "timing_threshold_ms": threshold}
    out = str(PurePosixPath(plan["paths"]["report"]) / "validation.json")
    res = _run_job(
        plan,
        {
            "name": "validate",
            "image": "blender",
            "command": [PYTHON, "-m", "renderlab.jobs.validate", "--spec", json.dumps(spec), "--out", out],
            "resources": _resources(plan, "validate"),
        },
        context,
    )
    return res.result


# --- notifications -------------------------------------------------------------------------------------


def _abs(plan_or_settings_root: str, rel: str | None) -> str | None:
    if not rel:
        return None
    p = PurePosixPath(rel)
    return str(p if p.is_absolute() else PurePosixPath(plan_or_settings_root) / p)


def _record_dir(share_root: str, run_id: str) -> Path | None:
    path = Path(share_root) / _layout().report(run_id)
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        log.warning("no notification record: the share is not reachable at %s from this worker: %s", path, e)
        return None
    return path


def notify_success(plan: dict, built: dict | None, assembled: dict | None, validated: dict | None) -> dict:
    from renderlab.pipeline.notify import notify

    root = plan["settings"]["share_root"]
    variants = (assembled or {}).get("variants") or {}
    summary = {
        "state": "success",
        "run_id": plan["run_id"],
        "song": plan["song"],
        "changelist": plan["changelist"],
        "backend": plan["settings"]["backend"],
        "run_folder": plan["run_folder"],
        "blend_files": [x for x in (_abs(root, (built or {}).get(k)) for k in ("blend", "loop_blend")) if x],
        "videos": [_abs(root, v.get("video")) for v in variants.values()],
        "contact_sheets": [_abs(root, v.get("contact_sheet")) for v in variants.values()],
        "timing_report": _abs(root, (built or {}).get("report")),
        "validation": {"ok": (validated or {}).get("ok"), "timing": (validated or {}).get("timing")},
    }
    conn_id = plan["settings"]["notify_conn_id"]
    return notify(plan["notify"], summary, _record_dir(root, plan["run_id"]), conn_id)


def _failed_task(context: dict) -> tuple[str | None, str | None]:
    ti = context.get("ti") or context.get("task_instance")
    task_id = getattr(ti, "task_id", None)
    exc = context.get("exception")
    if task_id is None:
        # A DAG-level callback: ask the run which task failed.
        try:
            failed = [t for t in context["dag_run"].get_task_instances() if t.state == "failed"]
            if failed:
                task_id = failed[0].task_id + (f"[{failed[0].map_index}]" if failed[0].map_index >= 0 else "")
        except Exception as e:
            log.debug("could not list the run's task instances: %s", e)
    return task_id, (str(exc) if exc else context.get("reason"))


def _task_key(ti: Any) -> str:
    index = getattr(ti, "map_index", -1)
    return f"{ti.task_id}" + (f"[{index}]" if index is not None and index >= 0 else "")


def on_task_failure(context: dict) -> None:
    """Task failure callback (after its last retry): keep the error text for the run's notification."""
    from renderlab.jobs import atomic
    from renderlab.pipeline import settings as settings_mod

    ti = context.get("ti")
    exc = context.get("exception")
    try:
        s = settings_mod.load()
        run_id = run_folder_id(context["run_id"])
        folder = _record_dir(s.share_root, run_id)
        if folder is not None and ti is not None:
            atomic.write_json(
                folder / "errors" / f"{_task_key(ti)}.json",
                {"task": _task_key(ti), "error": f"{type(exc).__name__}: {exc}" if exc else "failed"},
            )
    except Exception as e:  # a callback must never mask the task's own failure
        log.warning("could not record the task's error: %s", e)


def _recorded_errors(folder: Path | None) -> list[dict]:
    if folder is None:
        return []
    out = []
    for path in sorted((folder / "errors").glob("*.json"), key=lambda p: p.stat().st_mtime):
        try:
            out.append(json.loads(path.read_text(encoding="utf-8")))
        except (OSError, json.JSONDecodeError):
            continue
    return out


def on_run_failure(context: dict) -> None:
    """DAG failure callback: notify with the failed task and its error, and record it in the run folder."""
    from renderlab.pipeline import settings as settings_mod
    from renderlab.pipeline.notify import notify

    dag_run = context.get("dag_run")
    airflow_run_id = getattr(dag_run, "run_id", None) or context.get("run_id") or "unknown"
    params = dict(context.get("params") or getattr(dag_run, "conf", None) or {})
    try:
        s = settings_mod.load()
    except Exception as e:  # the failure may be the settings themselves; still tell someone
        log.error("failure notification without settings: %s", e)
        return
    run_id = run_folder_id(airflow_run_id)
    task_id, error = _failed_task(context)
    folder = _record_dir(s.share_root, run_id)
    errors = _recorded_errors(folder)
    if errors:
        task_id, error = errors[0]["task"], errors[0]["error"]
    summary = {
        "state": "failed",
        "run_id": run_id,
        "song": params.get("song"),
        "changelist": params.get("changelist"),
        "backend": s.backend,
        "run_folder": str(Path(s.share_root) / _layout().run(run_id)),
        "failed_task": task_id,
        "error": (error or "unknown error")[-2000:],
        "errors": errors[1:],
    }
    notify(params.get("notify") or s.notify, summary, folder, s.notify_conn_id)


def on_run_success(context: dict) -> None:
    """DAG success callback: the notify task already sent the success notification; log where it is."""
    dag_run = context.get("dag_run")
    log.info("render run %s succeeded", getattr(dag_run, "run_id", "?"))
