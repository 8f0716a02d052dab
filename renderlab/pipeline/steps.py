"""What each Job-running task of the render DAG does (dags/render.py only wires these together).

Tasks take the run's plan (renderlab.pipeline.run_plan), build `JobSpec`s whose paths are relative to the
share root and run them on the configured backend. Notifications and the Airflow callbacks live in
renderlab.pipeline.notify. Everything heavy is imported inside the functions so that parsing the DAG does
no work.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
from typing import Any

from renderlab.base.presets import PRESETS  # a constant; the DAG's params read it too
from renderlab.pipeline.run_plan import RunPlan, share_layout

log = logging.getLogger("renderlab.pipeline.steps")

PYTHON = "python"  # the image's interpreter; the local backend maps it to this venv's

# A song project name (the DAG's `song` Param): one path segment with no '..' anywhere, so it can never
# become a Perforce wildcard ('...'), a parent folder, or reach '*' / '%%N' (not in the class at all).
SONG_PATTERN = r"^(?!.*\.\.)[A-Za-z0-9][A-Za-z0-9_.+-]{0,63}$(?!\n)"  # '$' alone lets a final newline by
_P4_WILDCARDS = ("...", "*", "%%")
MAX_CHUNKS = 1024  # render tasks per run: Airflow's default max_map_length


def _label(value: str) -> str:
    """A Kubernetes label value (<= 63 chars) that still identifies the run."""
    v = re.sub(r"[^A-Za-z0-9_.-]", "-", value)
    if len(v) > 63:
        v = f"{v[:54]}-{hashlib.sha256(value.encode()).hexdigest()[:8]}"
    return v.strip("-_.") or "x"


def _run_job(plan: RunPlan, spec_kwargs: dict, context: dict | None):
    from renderlab.pipeline import backends
    from renderlab.pipeline.jobspec import JobSpec

    # run + work name say "the same piece of work" across tries (the kubernetes backend's SAME_WORK).
    labels = {
        "renderlab/run": _label(plan.run_id),
        "renderlab/work": _label(spec_kwargs["name"]),
        **spec_kwargs.pop("labels", {}),
    }
    spec = JobSpec(labels=labels, **spec_kwargs)
    return backends.get(plan.settings).run(spec, log, context)


def _resources(plan: RunPlan, kind: str):
    from renderlab.pipeline.jobspec import Resources

    s = plan.settings
    if kind == "render":
        return Resources(cpu=s.cpu, memory=s.memory, gpu=s.gpu)
    if kind == "build":  # Blender on the CPU: the render's size, no GPU
        return Resources(cpu=s.cpu, memory=s.memory)
    return Resources(cpu="1", memory="2Gi")


# --- tasks -------------------------------------------------------------------------------------------


def fetch_source(depot: str, song: str, changelist: Any) -> str:
    """The fetch image's --source: ``file:///abs/<song>[@N]`` or ``p4://[ssl:]H:P//path/<song>/...@N|latest``.

    The one place a depot path is built from a DAG param: it is checked here even though the Param's
    pattern already refuses the same names (a trigger through the API or a test may bypass the Param)."""
    if not isinstance(song, str) or not re.search(SONG_PATTERN, song):
        raise ValueError(
            f"song {song!r} is not a project name: use 1-64 letters, digits and _.+- with no '..' "
            "(a Perforce wildcard or a parent folder would widen the sync)"
        )
    base = depot.rstrip("/")
    if any(w in base for w in _P4_WILDCARDS) or "/../" in f"{base}/":
        raise ValueError(
            f"depot {depot!r} holds a Perforce wildcard ({', '.join(_P4_WILDCARDS)}) or '..'; "
            "set the depot setting to the exact projects folder, e.g. p4://perforce:1666//depot/songs"
        )
    if base.startswith("file://"):
        return f"{base}/{song}" + ("" if changelist == "latest" else f"@{int(changelist)}")
    change = "latest" if changelist == "latest" else int(changelist)
    return f"{base}/{song}/...@{change}"


def fetch(plan: RunPlan | dict, context: dict | None = None) -> dict:
    plan = RunPlan.of(plan)
    s = plan.settings
    secrets = []
    if not s.depot.startswith("file://"):
        from renderlab.pipeline.jobspec import SecretRef

        secrets = [
            SecretRef(env="P4USER", secret=s.p4_secret, key="user"),
            SecretRef(env="P4PASSWD", secret=s.p4_secret, key="password"),
        ]
        if "://ssl:" in s.depot:
            secrets.append(SecretRef(env="P4TRUST_FINGERPRINT", secret=s.p4_secret, key="fingerprint"))
    source = fetch_source(s.depot, plan.song, plan.changelist)
    res = _run_job(
        plan,
        {
            "name": "fetch",
            "image": "fetch",
            "command": [
                PYTHON,
                "-m",
                "renderlab.jobs.fetch",
                "--source",
                source,
                "--dest",
                plan.paths.assets,
            ],
            "secrets": secrets,
            "resources": _resources(plan, "fetch"),
            "timeout_s": plan.timeout_s("fetch"),
            "backoff_limit": 1,
            "description": f"sync {source}",
        },
        context,
    )
    return {**res.result, "job_seconds": res.seconds}


def build(plan: RunPlan | dict, context: dict | None = None) -> dict:
    plan = RunPlan.of(plan)
    command = [PYTHON, "-m", "renderlab.jobs.build_step", "--project", plan.paths.assets]
    fps = PRESETS[plan.preset].fps or plan.settings.fps  # 1080p60, 4k60, vertical: built at 60
    command += ["--out", plan.paths.scene, "--fps", str(fps)]
    res = _run_job(
        plan,
        {
            "name": "build",
            "image": "blender",
            "command": command,
            "resources": _resources(plan, "build"),
            "timeout_s": plan.timeout_s("build"),
            "description": f"build the scene for {plan.song}",
        },
        context,
    )
    return {**res.result, "job_seconds": res.seconds}


def _span(value: Any) -> tuple[int, int] | None:
    if isinstance(value, list | tuple) and len(value) == 2:
        return int(value[0]), int(value[1])
    return None


def chunks(plan: RunPlan | dict, built: dict) -> list[dict]:
    """Split the frames to render into chunks of frames_per_chunk, for the main and (if asked) loop scene."""
    plan = RunPlan.of(plan)
    if not plan.render:
        log.info("render=false: only the .blend files are built")
        return []
    variants: list[tuple[str, str, tuple[int, int]]] = []
    main = _span(built.get("frames"))
    if main is None:
        raise ValueError(f"build result has no frames [first, last]: {built.get('frames')!r}")
    if plan.frames is not None:
        lo, hi = max(plan.frames.first, main[0]), min(plan.frames.last, main[1])
        if lo > hi:
            raise ValueError(
                f"param frames='{plan.frames.first}-{plan.frames.last}' is outside the song's frames "
                f"{main[0]}-{main[1]}"
            )
        main = (lo, hi)
    variants.append(("main", built["blend"], main))
    if plan.loop:
        loop = _span(built.get("loop_frames"))
        if loop is None and isinstance(built.get("loop_frames"), int):
            loop = (1, int(built["loop_frames"]))
        if loop is None or not built.get("loop_blend"):
            raise ValueError("loop=true but the build produced no loop scene (loop_blend, loop_frames)")
        variants.append(("loop", built["loop_blend"], loop))
    size = plan.frames_per_chunk
    # Bounded before any chunk is made: the frame counts come from the build's result (the share), and a
    # render task is mapped per chunk (Airflow refuses more than its max_map_length, 1024 by default).
    count = sum(-(-(last - first + 1) // size) for _, _, (first, last) in variants)
    if count > MAX_CHUNKS:
        frames = sum(last - first + 1 for _, _, (first, last) in variants)
        raise ValueError(
            f"{frames} frames in chunks of {size} make {count} render tasks, more than {MAX_CHUNKS}; raise "
            f"frames_per_chunk to at least {-(-frames // MAX_CHUNKS)} (or render a frames range)"
        )
    out = []
    run_frames = sum(last - first + 1 for _, _, (first, last) in variants)
    for variant, blend, (first, last) in variants:
        for a in range(first, last + 1, size):
            b = min(a + size - 1, last)
            label = f"frames {a}-{b}" + ("" if variant == "main" else " (loop)")
            out.append({"variant": variant, "blend": blend, "first": a, "last": b, "label": label,
                        "run_frames": run_frames})  # fmt: skip
    log.info("%d chunk(s) of up to %d frames", len(out), size)
    log.info("render estimate: %s", render_estimate(plan, run_frames).line())
    return out


def render_estimate(plan: RunPlan | dict, frames: int):
    """What rendering `frames` frames of this run costs on one render task (renderlab.base.estimate)."""
    from renderlab.base.estimate import cores_of, render_estimate

    plan = RunPlan.of(plan)
    return render_estimate(
        frames, plan.preset, plan.samples, plan.resolution_percentage, cores_of(plan.settings.cpu)
    )


def render_command(plan: RunPlan | dict, chunk: dict) -> list[str]:
    plan = RunPlan.of(plan)
    return [
        PYTHON,
        "-m",
        "blender_scripts.render",
        "--blend",
        chunk["blend"],
        "--frames",
        f"{chunk['first']}-{chunk['last']}",
        "--out",
        plan.paths.frames[chunk["variant"]],
        "--preset",
        plan.preset,
        "--samples",
        str(plan.samples),
        "--resolution-percentage",
        str(plan.resolution_percentage),
        # The chunk's progress record, and the run's live gallery page made from every chunk's.
        "--variant",
        chunk["variant"],
        "--progress",
        str(share_layout().progress(plan.run_id)),
        "--run-frames",
        str(chunk.get("run_frames") or chunk["last"] - chunk["first"] + 1),
        "--live",
        str(share_layout().gallery_run(plan.run_id)),
        "--title",
        plan.song,
        # A Job that asked for a GPU must get one (no silent CPU fallback); otherwise take what is there.
        "--device",
        "gpu" if plan.settings.gpu else "auto",
    ]


def render_chunk(plan: RunPlan | dict, chunk: dict, context: dict | None = None) -> dict:
    plan = RunPlan.of(plan)
    # The render entrypoint is resumable: a retry renders only frames that are missing or invalid.
    res = _run_job(
        plan,
        {
            "name": f"render-{chunk['variant']}-{chunk['first']}-{chunk['last']}",
            "image": "blender",
            "command": render_command(plan, chunk),
            "resources": _resources(plan, "render"),
            "timeout_s": plan.timeout_s("render"),
            "labels": {"renderlab/chunk": f"{chunk['variant']}-{chunk['first']}-{chunk['last']}"},
            "description": chunk["label"],
        },
        context,
    )
    return {**chunk, "result": res.result, "job_seconds": res.seconds}


def _fps(plan: RunPlan, built: dict) -> int:
    return int(built.get("fps") or plan.settings.fps)


def _variant_spans(rendered: list[dict] | None) -> dict[str, tuple[int, int]]:
    spans: dict[str, tuple[int, int]] = {}
    for c in rendered or []:
        lo, hi = spans.get(c["variant"], (c["first"], c["last"]))
        spans[c["variant"]] = (min(lo, c["first"]), max(hi, c["last"]))
    return spans


def assemble(
    plan: RunPlan | dict, built: dict, rendered: list[dict] | None, context: dict | None = None
) -> dict:
    plan = RunPlan.of(plan)
    spans = _variant_spans(rendered)
    if not spans:
        return {"variants": {}}
    fps = _fps(plan, built)
    song_first = (_span(built.get("frames")) or (1, 1))[0]
    out: dict[str, Any] = {"variants": {}}
    for variant, (first, last) in sorted(spans.items()):
        offset = (first - song_first) / fps if variant == "main" else 0.0
        mp4 = share_layout().video_file(plan.run_id, plan.song, variant)
        sheet = share_layout().contact_sheet(plan.run_id, plan.song, variant)
        cmd = [PYTHON, "-m", "renderlab.jobs.assemble", "--frames", plan.paths.frames[variant]]
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
                "timeout_s": plan.timeout_s("assemble"),
            },
            context,
        )
        out["variants"][variant] = {**res.result, "first": first, "last": last, "fps": fps}
    return out


def validate(plan: RunPlan | dict, built: dict, assembled: dict | None, context: dict | None = None) -> dict:
    plan = RunPlan.of(plan)
    variants = {
        name: {
            "frames": plan.paths.frames[name],
            "first": v["first"],
            "last": v["last"],
            "fps": v["fps"],
            "video": v["video"],
        }
        for name, v in ((assembled or {}).get("variants") or {}).items()
    }
    fps = _fps(plan, built)
    threshold = plan.settings.timing_threshold_ms or 1000 / fps
    spec = {"variants": variants, "timing_report": built.get("report"), "timing_threshold_ms": threshold}
    out = str(share_layout().validation_report(plan.run_id))
    res = _run_job(
        plan,
        {
            "name": "validate",
            "image": "blender",
            "command": [PYTHON, "-m", "renderlab.jobs.validate", "--spec", json.dumps(spec), "--out", out],
            "resources": _resources(plan, "validate"),
            "timeout_s": plan.timeout_s("validate"),
        },
        context,
    )
    return {**res.result, "job_seconds": res.seconds}


def durations(steps: dict[str, Any]) -> dict[str, float]:
    """Seconds each step's Jobs ran, in pipeline order (render: all chunks added up)."""
    out: dict[str, float] = {}
    for name in ("fetch", "build"):
        res = steps.get(name) or {}
        if isinstance(res.get("job_seconds"), int | float):
            out[name] = round(float(res["job_seconds"]), 3)
    rendered = steps.get("render") or []
    chunk_seconds = [c["job_seconds"] for c in rendered if isinstance(c.get("job_seconds"), int | float)]
    if chunk_seconds:
        out[f"render ({len(chunk_seconds)} chunks)"] = round(sum(chunk_seconds), 3)
    variants = (steps.get("assemble") or {}).get("variants") or {}
    seconds = [v["seconds"] for v in variants.values() if isinstance(v.get("seconds"), int | float)]
    if seconds:
        out["assemble"] = round(sum(seconds), 3)
    validated = steps.get("validate") or {}
    if isinstance(validated.get("job_seconds"), int | float):
        out["validate"] = round(float(validated["job_seconds"]), 3)
    return out


def gallery_meta(plan: RunPlan | dict, steps: dict[str, Any], context: dict | None = None) -> dict:
    """What the run page shows beside the run folder's files: params, the synced change, durations.

    `steps` holds the upstream results by step: fetch, build, render (the chunks), assemble, validate."""
    plan = RunPlan.of(plan)
    started = None
    dag_run = (context or {}).get("dag_run")
    if getattr(dag_run, "start_date", None) is not None:
        started = dag_run.start_date.isoformat(timespec="seconds")
    built = steps.get("build") or {}
    variants = {
        name: {k: v.get(k) for k in ("frames", "fps", "duration_s")}
        for name, v in ((steps.get("assemble") or {}).get("variants") or {}).items()
    }
    frames = "all" if plan.frames is None else f"{plan.frames.first}-{plan.frames.last}"
    return {
        "run_id": plan.run_id,
        "airflow_run_id": plan.airflow_run_id,
        "song": plan.song,
        # The change the fetch resolved ("latest" becomes a number), else what was asked for.
        "changelist": (steps.get("fetch") or {}).get("changelist") or plan.changelist,
        "backend": plan.settings.backend,
        "started": started,
        "params": {
            "preset": plan.preset,
            "frames": frames,
            "fps": built.get("fps") or plan.settings.fps,
            "samples": plan.samples,
            "resolution_percentage": plan.resolution_percentage,
            "frames_per_chunk": plan.frames_per_chunk,
            "loop": plan.loop,
        },
        "durations": durations(steps),
        "variants": variants,
    }


def gallery(plan: RunPlan | dict, steps: dict[str, Any], context: dict | None = None) -> dict:
    """The last Job: publish the run's page to the gallery on the share (the docs site serves it)."""
    plan = RunPlan.of(plan)
    meta = gallery_meta(plan, steps, context)
    res = _run_job(
        plan,
        {
            "name": "gallery",
            "image": "blender",
            "command": [
                PYTHON,
                "-m",
                "renderlab.jobs.gallery",
                "--run",
                plan.paths.run,
                "--out",
                plan.paths.gallery,
                "--meta",
                json.dumps(meta),
            ],  # fmt: skip
            "resources": _resources(plan, "gallery"),
            "timeout_s": plan.timeout_s("gallery"),
            "description": "publish the run's gallery page",
        },
        context,
    )
    return {**res.result, "job_seconds": res.seconds}
