"""The render DAG: fetch a song project -> build the scene -> render frame chunks -> assemble -> validate.

Every step that touches the share is a Job (renderlab.pipeline.jobspec.JobSpec) run by the backend the configuration
names (renderlab.pipeline.settings: the Airflow Variable ``renderlab`` / the lab config); the DAG never knows which.
Nothing is computed at import time but the song suggestions of a local depot (one directory listing):
the tasks import what they need when they run.
"""

from __future__ import annotations

import pendulum
from airflow.sdk import Param, dag, get_current_context, task

from renderlab.pipeline import depot_songs
from renderlab.pipeline import steps as rt

SONG_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.+-]{0,63}$"


def _params() -> dict[str, Param]:
    """The trigger form: a title and a plain description per field; the song field suggests the projects of a
    local (file://) depot -- a directory listing, the only thing done while parsing."""
    songs = depot_songs.listed()
    where = (
        "Start typing to pick one of the projects found in the depot."
        if songs
        else "The projects are the folders under the depot's projects path (pipeline settings: depot)."
    )
    return {
        "song": Param(
            "demo" if not songs or "demo" in songs else songs[0],
            type="string",
            pattern=SONG_PATTERN,
            title="Song project",
            description=f"The depot folder that holds the song (its MIDI is <project>/song.mid). {where}",
            **({"examples": songs} if songs else {}),
        ),
        "changelist": Param(
            "latest",
            type="string",
            pattern=r"^(latest|[1-9][0-9]{0,9})$",
            title="Changelist",
            description='The depot version to render: "latest", or a Perforce changelist number such as 1234.',
        ),
        "preset": Param(
            None,
            type=["null", "string"],
            enum=[None, "demo", "hd", "4k"],
            values_display={
                "null": "Lab default (pipeline.preset)",
                "demo": "demo: 640 x 360",
                "hd": "hd: 1920 x 1080",
                "4k": "4k: 3840 x 2160",
            },
            title="Quality preset",
            description="Output size and quality; the resolution percentage below scales it.",
        ),
        "frames": Param(
            "all",
            type="string",
            pattern=r"^(all|[0-9]{1,6}-[0-9]{1,6})$",
            title="Frames",
            description='"all", or the first and last frame to render, inclusive, such as 1-240.',
        ),
        "samples": Param(
            None,
            type=["null", "integer"],
            minimum=1,
            maximum=65536,
            title="Samples per pixel",
            description="Cycles samples: fewer is faster and noisier. Empty: the lab default (pipeline.samples).",
        ),
        "resolution_percentage": Param(
            100,
            type="integer",
            minimum=1,
            maximum=100,
            title="Resolution %",
            description="Render at this percentage of the preset's width and height (50: a quarter of the pixels).",
        ),
        "frames_per_chunk": Param(
            None,
            type=["null", "integer"],
            minimum=1,
            maximum=100000,
            title="Frames per render task",
            description='Each render task (shown as "frames A-B") renders this many frames. '
            "Empty: the lab default (pipeline.frames_per_chunk).",
        ),
        "loop": Param(
            False,
            type="boolean",
            title="Also render the loop",
            description="Render the seamless loop version of the song as well.",
        ),
        "render": Param(
            True,
            type="boolean",
            title="Render frames",
            description="Off: only build the .blend files (no frames, no video).",
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
            title="Notification",
            description="Where the summary goes when the run ends; a record is always written to the run's report folder.",
        ),
    }


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
    params=_params(),
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
