"""The render DAG: fetch a song project -> build the scene -> render frame chunks -> assemble -> validate.

The first task resolves the run's plan (renderlab.pipeline.run_plan) from the params and the settings (the
Airflow Variable ``renderlab``, renderlab.pipeline.settings); every later task reads that plan. Every step that
touches the share is a Job (renderlab.pipeline.jobspec.JobSpec) run by the backend the settings name; the DAG
never knows which. Notifications and callbacks: renderlab.pipeline.notify. Nothing is computed at import time.
"""

from __future__ import annotations

import pendulum
from airflow.sdk import Param, dag, get_current_context, task

from blender_scripts.presets import PRESET_NAMES  # a constant: the content's own list of presets
from renderlab.pipeline import notify as notifications
from renderlab.pipeline import run_plan, settings, steps


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
        "on_failure_callback": notifications.on_task_failure,
    },
    on_success_callback=notifications.on_run_success,
    on_failure_callback=notifications.on_run_failure,
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
    def plan_run() -> dict:
        return run_plan.resolve_run(get_current_context(), settings.load()).xcom()

    @task
    def fetch(run: dict) -> dict:
        return steps.fetch(run, get_current_context())

    @task
    def build(run: dict, fetched: dict) -> dict:
        return steps.build(run, get_current_context())

    @task
    def chunks(run: dict, built: dict) -> list[dict]:
        return steps.chunks(run, built)

    @task(retries=2, map_index_template="{{ chunk_label }}")
    def render_chunk(run: dict, chunk: dict) -> dict:
        context = get_current_context()
        context["chunk_label"] = chunk["label"]  # type: ignore[typeddict-unknown-key]
        return steps.render_chunk(run, chunk, context)

    @task(trigger_rule="none_failed")
    def assemble(run: dict, built: dict, rendered: list[dict] | None) -> dict:
        return steps.assemble(run, built, rendered, get_current_context())

    @task(trigger_rule="none_failed", retries=0)  # a verdict: retrying cannot change it
    def validate(run: dict, built: dict, assembled: dict) -> dict:
        return steps.validate(run, built, assembled, get_current_context())

    @task(trigger_rule="none_failed", retries=0)
    def notify(run: dict, built: dict, assembled: dict, validated: dict) -> dict:
        return notifications.notify_success(run, built, assembled, validated)

    run = plan_run()
    built = build(run, fetch(run))
    rendered = render_chunk.partial(run=run).expand(chunk=chunks(run, built))
    assembled = assemble(run, built, rendered)
    notify(run, built, assembled, validate(run, built, assembled))


render()
