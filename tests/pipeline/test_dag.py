"""The DAG file: imports cleanly, does no work at import time, and has the intended shape and params."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import pytest

from renderlab.base.presets import PRESET_NAMES
from tests.pipeline.conftest import REPO, base_env

pytestmark = pytest.mark.airflow


DESCRIBE = """
import json
from airflow.dag_processing.dagbag import DagBag
bag = DagBag(dag_folder="dags")
dag = bag.get_dag("render")
print(json.dumps({
    "import_errors": {k: str(v) for k, v in bag.import_errors.items()},
    "schedule": type(dag.timetable).__name__,
    "tasks": {t.task_id: {"downstream": sorted(t.downstream_task_ids), "trigger_rule": getattr(t.trigger_rule, "value", str(t.trigger_rule)),
                          "retries": getattr(t, "partial_kwargs", {}).get("retries", getattr(t, "retries", None)),
                          "map_index_template": getattr(t, "map_index_template", None)
                              or getattr(t, "partial_kwargs", {}).get("map_index_template"),
                          "mapped": t.is_mapped if hasattr(t, "is_mapped") else False,
                          "execution_timeout_s": (lambda v: v.total_seconds() if v else None)(
                              getattr(t, "partial_kwargs", {}).get("execution_timeout") or getattr(t, "execution_timeout", None))}
              for t in dag.tasks},
    "params": {k: dag.params.get_param(k).schema for k in dag.params},
    "descriptions": {k: dag.params.get_param(k).description for k in dag.params},
    "defaults": dict(dag.params),
    "on_failure_callback": bool(dag.on_failure_callback),
}, default=str))
"""


@pytest.fixture(scope="module")
def dag(airflow_home):
    proc = subprocess.run(
        [sys.executable, "-c", DESCRIBE],
        cwd=REPO,
        env=base_env(airflow_home),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    info = json.loads(proc.stdout.strip().splitlines()[-1])
    assert info["import_errors"] == {}
    return info


def test_import_does_no_work(tmp_path):
    """Importing the DAG must not read settings, start processes, touch the network or the share."""
    probe = textwrap.dedent(
        """
        import socket, subprocess, sys
        import airflow.sdk, pendulum, croniter  # Airflow's own import-time work is not the DAG's
        import renderlab.pipeline.settings, renderlab.pipeline.backends
        def boom(*a, **k):
            raise SystemExit("work at import time: " + repr(a)[:200])
        renderlab.pipeline.settings.load = boom
        renderlab.pipeline.backends.get = boom
        subprocess.Popen.__init__ = boom
        socket.socket.connect = boom
        import time
        t = time.monotonic()
        import importlib.util
        spec = importlib.util.spec_from_file_location("render_dag", "dags/render.py")
        mod = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(mod)
        print("ok %.2f" % (time.monotonic() - t))
        """
    )
    env = base_env(tmp_path)
    env["AIRFLOW_VAR_RENDERLAB"] = '{"backend": "local", "share_root": "/nonexistent/share"}'
    proc = subprocess.run(
        [sys.executable, "-c", probe],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.strip().startswith("ok")


def test_structure(dag):
    assert dag["schedule"] == "NullTimetable"  # manual runs only
    tasks = dag["tasks"]
    assert set(tasks) == {
        "plan_run",
        "fetch",
        "build",
        "chunks",
        "render_chunk",
        "assemble",
        "validate",
        "gallery",
        "notify",
    }
    down = {k: v["downstream"] for k, v in tasks.items()}
    everything = ["assemble", "build", "chunks", "fetch", "gallery", "notify", "render_chunk", "validate"]
    assert down["plan_run"] == everything
    assert down["fetch"] == ["build", "gallery"]
    assert down["build"] == ["assemble", "chunks", "gallery", "notify", "validate"]
    assert down["chunks"] == ["render_chunk"]
    assert down["render_chunk"] == ["assemble", "gallery"]
    assert down["assemble"] == ["gallery", "notify", "validate"]
    # The gallery page is published after the verdict, and the notification links it.
    assert down["validate"] == ["gallery", "notify"]
    assert down["gallery"] == ["notify"]
    assert tasks["gallery"]["trigger_rule"] == "none_failed"
    render = tasks["render_chunk"]
    assert render["mapped"] and render["map_index_template"] == "{{ chunk_label }}"
    assert render["retries"] >= 1
    assert tasks["notify"]["trigger_rule"] == "none_failed" and tasks["validate"]["retries"] == 0
    # The plan is a verdict on the params (a still preset over many frames): one error, before the fetch.
    assert tasks["plan_run"]["retries"] == 0
    assert dag["on_failure_callback"]


def test_params_schema(dag):
    params = dag["params"]
    assert set(params) == {
        "song",
        "changelist",
        "preset",
        "frames",
        "samples",
        "resolution_percentage",
        "frames_per_chunk",
        "loop",
        "render",
        "notify",
    }
    assert params["preset"]["enum"] == [None, *PRESET_NAMES]  # the content's own list, not a copy
    assert params["frames"]["pattern"].startswith("^(all|")
    from renderlab.pipeline.steps import SONG_PATTERN

    assert params["song"]["pattern"] == SONG_PATTERN  # no '..', no Perforce wildcard (test_steps)
    assert dag["defaults"]["render"] is True and dag["defaults"]["loop"] is False
    # The trigger form: every field has a title and a description a person reads; dropdown labels for enums.
    for name, schema in params.items():
        assert schema.get("title") and len(dag["descriptions"][name] or "") > 20, name
        if "enum" in schema:
            assert set(schema["values_display"]) == {"null" if v is None else v for v in schema["enum"]}, name


def test_the_trigger_form_is_grouped_in_sections(dag):
    """Airflow's params UI groups fields by `section`: song, quality, frames, output, each field in one of them
    and each section's fields together, in the form's order."""
    sections = [schema.get("section") for schema in dag["params"].values()]
    assert list(dict.fromkeys(sections)) == ["Song", "Quality", "Frames", "Output"]
    assert sections == sorted(sections, key=["Song", "Quality", "Frames", "Output"].index)
    by_section = {s: [k for k, v in dag["params"].items() if v.get("section") == s] for s in sections}
    assert by_section["Song"] == ["song", "changelist"] and "preset" in by_section["Quality"]


def test_every_task_has_an_execution_timeout_past_its_jobs_bound(dag):
    """No task can run forever; one that runs a Job outlives that Job's own bound."""
    from renderlab.pipeline import run_plan

    timeouts = {name: t["execution_timeout_s"] for name, t in dag["tasks"].items()}
    assert all(timeouts.values()), timeouts
    for kind in ("fetch", "build", "assemble", "validate", "gallery"):
        assert timeouts[kind] == run_plan.JOB_TIMEOUT_S[kind] + run_plan.TASK_MARGIN_S
    assert timeouts["render_chunk"] == run_plan.RENDER_CHUNK_MAX_S + run_plan.TASK_MARGIN_S
