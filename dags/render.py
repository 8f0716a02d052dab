"""The render DAG: fetch a song project -> build the scene -> render frame chunks -> assemble -> validate.

Every step that touches the share is a Job (renderlab.pipeline.jobspec.JobSpec) run by the backend the configuration
names (renderlab.pipeline.settings: the Airflow Variable ``renderlab`` / the lab config); the DAG never knows which.
Nothing is computed at import time: the tasks import what they need when they run.
"""

from __future__ import annotations

import pendulum
from airflow.sdk import Param, dag, get_current_context, task

from blender_scripts.presets import PRESET_NAMES  # a constant: the content's own list of presets
from renderlab.pipeline import steps as rt


@dag(
    dag_id="render",
    schedule=None,
    start_date=pendulum.datetime(2025, 1, 1, tz="UTC"),
    catchup=False,
    max_active_runs=2,
    tags=["renderlab"],
    doc_md=__doc__,
    default_args={
        "retries": 1,
        "retry_delay": pendulum.duration(seconds=5),
        "on_failure_callback": rt.on_task_failure,
    },
    on_success_callback=rt.on_run_success,
    on_failure_callback=rt.on_run_failure,
    params={
        "song": Param(
            "demo",
            type="string",
            pattern=r"^[A-Za-z0-9][A-Za-z0-9_.+-]{0,63}$",
            description="song project under the depot's projects path (its MIDI is <project>/song.mid)",
        ),
        "changelist": Param(
            "latest",
            oneOf=[{"type": "integer", "minimum": 1}, {"type": "string", "enum": ["latest"]}],
            description='Perforce changelist number, or "latest"',
        ),
        "preset": Param(
            None,
            type=["null", "string"],
            enum=[None, *PRESET_NAMES],
            description="render preset (blender_scripts/presets.py); null: the lab default",
        ),
        "frames": Param(
            "all",
            type="string",
            pattern=r"^(all|[0-9]{1,6}-[0-9]{1,6})$",
            description='"all" or an inclusive range such as "1-240"',
        ),
        "samples": Param(None, type=["null", "integer"], minimum=1, maximum=65536),
        "resolution_percentage": Param(100, type="integer", minimum=1, maximum=100),
        "frames_per_chunk": Param(None, type=["null", "integer"], minimum=1, maximum=100000),
        "loop": Param(False, type="boolean", description="also render the seamless loop version"),
        "render": Param(True, type="boolean", description="false: build only the .blend files"),
        "notify": Param(
            None,
            type=["null", "string"],
            enum=[None, "none", "webhook", "slack"],
            description="notification target (URL: the renderlab_notify connection); null: the lab default",
        ),
    },
    render_template_as_native_obj=True,
)
def render():
    @task
    def plan() -> dict:
        return rt.plan(get_current_context())

    @task
    def fetch(plan: dict) -> dict:
        return rt.fetch(plan, get_current_context())

    @task
    def build(plan: dict, fetched: dict) -> dict:
        return rt.build(plan, get_current_context())

    @task
    def chunks(plan: dict, built: dict) -> list[dict]:
        return rt.chunks(plan, built)

    @task(retries=2, map_index_template="{{ chunk_label }}")
    def render_chunk(plan: dict, chunk: dict) -> dict:
        context = get_current_context()
        context["chunk_label"] = chunk["label"]  # type: ignore[typeddict-unknown-key]
        return rt.render_chunk(plan, chunk, context)

    @task(trigger_rule="none_failed")
    def assemble(plan: dict, built: dict, rendered: list[dict] | None) -> dict:
        return rt.assemble(plan, built, rendered, get_current_context())

    @task(trigger_rule="none_failed", retries=0)  # a verdict: retrying cannot change it
    def validate(plan: dict, built: dict, assembled: dict) -> dict:
        return rt.validate(plan, built, assembled, get_current_context())

    @task(trigger_rule="none_failed", retries=0)
    def notify(plan: dict, built: dict, assembled: dict, validated: dict) -> dict:
        return rt.notify_success(plan, built, assembled, validated)

    p = plan()
    b = build(p, fetch(p))
    r = render_chunk.partial(plan=p).expand(chunk=chunks(p, b))
    a = assemble(p, b, r)
    notify(p, b, a, validate(p, b, a))


render()
