"""The render DAG: fetch a song project -> build the scene -> render frame chunks -> assemble -> validate
-> publish the run's gallery page -> notify.

The first task resolves the run's plan (renderlab.pipeline.run_plan) from the params and the settings (the
Airflow Variable ``renderlab``, renderlab.pipeline.settings); every later task reads that plan. Every step that
touches the share is a Job (renderlab.pipeline.jobspec.JobSpec) run by the backend the settings name; the DAG
never knows which. Notifications and callbacks: renderlab.pipeline.notify. Nothing is computed at import time
but the trigger form's song suggestions for a local depot (one directory listing, renderlab.pipeline.depot_songs).
"""

from __future__ import annotations

import pendulum
from airflow.sdk import Param, dag, get_current_context, task

from renderlab.base.presets import PRESET_NAMES, PRESETS  # constants: the content's own presets
from renderlab.pipeline import depot_songs, run_plan, settings, steps
from renderlab.pipeline import notify as notifications

# One segment, no '..': never a Perforce wildcard (owned by renderlab.pipeline.steps).
SONG_PATTERN = steps.SONG_PATTERN
# The trigger form's sections, in order (Airflow's params UI groups the fields by `section`).
SONG, QUALITY, FRAMES, OUTPUT = "Song", "Quality", "Frames", "Output"
SECTIONS = (SONG, QUALITY, FRAMES, OUTPUT)


def _params() -> dict[str, Param]:
    """The trigger form, in four sections (what to render, how well, which frames, what comes out): a title and
    a plain description per field; the song field suggests the projects of a local (file://) depot -- a
    directory listing, the only thing done while parsing."""
    songs = depot_songs.listed()
    where = (
        "Start typing to pick one of the projects found in the depot."
        if songs
        else "The projects are the folders under the depot's projects path (pipeline settings: depot)."
    )
    return {
        "song": Param(
            depot_songs.DEFAULT_SONG if not songs or depot_songs.DEFAULT_SONG in songs else songs[0],
            type="string",
            pattern=SONG_PATTERN,
            section=SONG,
            title="Song project",
            description=f"The depot folder that holds the song (its MIDI is <project>/song.mid). {where}",
            **({"examples": songs} if songs else {}),
        ),
        "changelist": Param(
            "latest",
            type="string",
            pattern=r"^(latest|[1-9][0-9]{0,9})$",
            section=SONG,
            title="Changelist",
            description='The depot version to render: "latest", or a Perforce changelist number such as 1234.',
        ),
        "preset": Param(
            None,
            type=["null", "string"],
            enum=[None, *PRESET_NAMES],
            values_display={
                "null": "Lab default (pipeline.preset)",
                **{
                    name: f"{name}: {p.width} x {p.height}, {p.description}, ~{p.core_s_per_frame:g} CPU core-s/frame"
                    for name, p in PRESETS.items()
                },
            },
            section=QUALITY,
            title="Quality preset",
            description="Output size and quality; the resolution percentage below scales it. Each preset says "
            "what one frame costs in CPU core-seconds at its own samples (a 2-core render task takes half of "
            "that per frame); the plan task's log and `make render` give the run's estimate.",
        ),
        "samples": Param(
            None,
            type=["null", "integer"],
            minimum=1,
            maximum=65536,
            section=QUALITY,
            title="Samples per pixel",
            description="Cycles samples: fewer is faster and noisier. Empty: the lab default (pipeline.samples).",
        ),
        "resolution_percentage": Param(
            100,
            type="integer",
            minimum=1,
            maximum=100,
            section=QUALITY,
            title="Resolution %",
            description="Render at this percentage of the preset's width and height (50: a quarter of the pixels).",
        ),
        "frames": Param(
            "all",
            type="string",
            pattern=r"^(all|[1-9][0-9]{0,5}-[1-9][0-9]{0,5})$",
            section=FRAMES,
            title="Frames",
            description='"all", or the first and last frame to render, inclusive, such as 1-240.',
        ),
        "frames_per_chunk": Param(
            None,
            type=["null", "integer"],
            minimum=1,
            maximum=100000,
            section=FRAMES,
            title="Frames per render task",
            description='Each render task (shown as "frames A-B") renders this many frames. '
            "Empty: the lab default (pipeline.frames_per_chunk).",
        ),
        "render": Param(
            True,
            type="boolean",
            section=OUTPUT,
            title="Render frames",
            description="Off: only build the .blend files (no frames, no video).",
        ),
        "loop": Param(
            False,
            type="boolean",
            section=OUTPUT,
            title="Also render the loop",
            description="Render the seamless loop version of the song as well.",
        ),
        "notify": Param(
            None,
            type=["null", "string"],
            enum=[None, "none", "webhook", "slack"],
            values_display={
                "null": "Lab default (pipeline.notify)",
                "none": "none: only the record in the run folder",
                "webhook": "webhook: JSON to the renderlab_notify connection",
                "slack": "slack: a Slack message via the renderlab_notify connection",
            },
            section=OUTPUT,
            title="Notification",
            description="Where the summary goes when the run ends; a record is always written to the run's report folder.",
        ),
    }


def _timeout(kind: str):
    """A task's execution_timeout: its Job's own bound (renderlab.pipeline.run_plan) plus a margin."""
    return pendulum.duration(seconds=run_plan.task_timeout_s(kind))


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
        # Every task ends: the ones that run no Job (plan, chunks, notify) within minutes.
        "execution_timeout": pendulum.duration(seconds=run_plan.TASK_MARGIN_S),
        "retry_delay": pendulum.duration(seconds=5),
        "on_failure_callback": notifications.on_task_failure,
    },
    on_success_callback=notifications.on_run_success,
    on_failure_callback=notifications.on_run_failure,
    params=_params(),
    render_template_as_native_obj=True,
)
def render():
    @task
    def plan_run() -> dict:
        return run_plan.resolve_run(get_current_context(), settings.load()).xcom()

    @task(execution_timeout=_timeout("fetch"))
    def fetch(run: dict) -> dict:
        return steps.fetch(run, get_current_context())

    @task(execution_timeout=_timeout("build"))
    def build(run: dict, fetched: dict) -> dict:
        return steps.build(run, get_current_context())

    @task
    def chunks(run: dict, built: dict) -> list[dict]:
        return steps.chunks(run, built)

    @task(retries=2, map_index_template="{{ chunk_label }}", execution_timeout=_timeout("render"))
    def render_chunk(run: dict, chunk: dict) -> dict:
        context = get_current_context()
        context["chunk_label"] = chunk["label"]  # type: ignore[typeddict-unknown-key]
        return steps.render_chunk(run, chunk, context)

    @task(trigger_rule="none_failed", execution_timeout=_timeout("assemble"))
    def assemble(run: dict, built: dict, rendered: list[dict] | None) -> dict:
        return steps.assemble(run, built, rendered, get_current_context())

    # a verdict: a retry cannot change it
    @task(trigger_rule="none_failed", retries=0, execution_timeout=_timeout("validate"))
    def validate(run: dict, built: dict, assembled: dict) -> dict:
        return steps.validate(run, built, assembled, get_current_context())

    # idempotent: a retry rewrites nothing that is already published
    @task(trigger_rule="none_failed", execution_timeout=_timeout("gallery"))
    def gallery(run: dict, upstream: dict) -> dict:
        return steps.gallery(run, upstream, get_current_context())

    @task(trigger_rule="none_failed", retries=0)
    def notify(run: dict, built: dict, assembled: dict, validated: dict, published: dict) -> dict:
        return notifications.notify_success(run, built, assembled, validated, published)

    run = plan_run()
    fetched = fetch(run)
    built = build(run, fetched)
    rendered = render_chunk.partial(run=run).expand(chunk=chunks(run, built))
    assembled = assemble(run, built, rendered)
    validated = validate(run, built, assembled)
    upstream = {
        "fetch": fetched,
        "build": built,
        "render": rendered,
        "assemble": assembled,
        "validate": validated,
    }
    notify(run, built, assembled, validated, gallery(run, upstream))


render()
