"""The DAG's Jobs in the images, as the cluster would run them: each task function builds its JobSpec, the
kubernetes backend turns it into a Job, and that Job's pod spec runs as is under `podman kube play`
(uid 2000, read-only root, capabilities dropped, the share PVC bound to a share folder, no network)."""

from __future__ import annotations

import os

import pytest

from renderlab.pipeline import run_plan
from renderlab.pipeline import settings as pipeline_settings
from renderlab.pipeline import steps as pipeline
from renderlab.pipeline.jobspec import JobFailed

from .conftest import podman

pytestmark = [pytest.mark.container, pytest.mark.slow]

# The demo preset, two frames, the smallest sampling and size the DAG's own parameters allow.
PARAMS = {"song": "ode_waltz", "preset": "demo", "frames": "1-2", "samples": 1, "resolution_percentage": 10}
RUN = "manual__2026-01-01T00:00:00+00:00"


def plan_run() -> dict:
    """What the DAG's plan_run task hands on (its XCom), from the settings the Airflow Variable holds."""
    return run_plan.resolve_run({"params": PARAMS, "run_id": RUN}, pipeline_settings.load()).xcom()


def test_fetch_build_render_assemble_validate_in_pods(kube_play, share):
    plan = plan_run()
    first = pipeline.fetch(plan)
    assert first["files_transferred"] == first["files_total"] == 1
    assert pipeline.fetch(plan)["files_transferred"] == 0  # the second sync transfers nothing
    assert (share / plan["paths"]["assets"] / "song.mid").read_bytes() == (
        share / "depot/songs/ode_waltz/song.mid"
    ).read_bytes()

    built = pipeline.build(plan)
    assert built["frames"][0] == 1 and built["notes"] > 0
    chunks = pipeline.chunks(plan, built)
    assert [(c["first"], c["last"]) for c in chunks] == [(1, 2)]
    rendered = [pipeline.render_chunk(plan, c) for c in chunks]
    assert rendered[0]["result"]["rendered"] == 2
    assembled = pipeline.assemble(plan, built, rendered)
    validated = pipeline.validate(plan, built, assembled)
    assert "ok" in validated

    frames = sorted((share / plan["paths"]["frames"]["main"]).glob("frame_*.png"))
    assert [f.name for f in frames] == ["frame_000001.png", "frame_000002.png"]
    video = share / assembled["variants"]["main"]["video"].removeprefix("/share/")
    assert video.stat().st_size > 0
    # Everything on the share belongs to the share's uid, as on the real share.
    assert {p.stat().st_uid for p in (share / "runs").rglob("*")} == {2000}

    # The pods ran as the spec says: uid 2000, read-only root, no capabilities, the recorded image.
    assert [p["metadata"]["name"].split("-")[1] for p in kube_play.pods] == [
        "fetch", "fetch", "build", "render", "assemble", "validate"
    ]  # fmt: skip
    for c in kube_play.containers:
        assert c["Config"]["User"] == "2000:2000" or c["Config"]["User"] == "2000"
        assert c["HostConfig"]["ReadonlyRootfs"] is True
        assert c["HostConfig"]["CapDrop"] and not c["HostConfig"]["CapAdd"]


def test_a_share_the_job_uid_cannot_write_fails_with_the_entrypoints_message(kube_play, share):
    plan = plan_run()
    # The assets folder left owned by root (podman hands a fresh volume's root to the pod's user, as a
    # share's top folder usually belongs to the share uid anyway).
    (share / "assets").mkdir(mode=0o755)
    os.chown(share / "assets", 0, 0)
    with pytest.raises(JobFailed) as e:
        pipeline.fetch(plan)
    message = str(e.value)
    assert "exited with status 6" in message  # the fetch's "destination not writable" status
    assert "fetch: error:" in message and "permission" in message.lower(), message


def test_an_image_missing_a_module_fails_with_one_clear_message(kube_play, settings, share, built, tmp_path):
    broken = f"localhost/renderlab-blender-broken:{built['blender']['tag']}"
    if podman("image", "exists", broken, check=False).returncode != 0:
        (tmp_path / "Containerfile").write_text(
            f"FROM {built['blender']['ref']}\nUSER 0\nRUN rm -r /opt/venv/lib/python3.11/site-packages/mido\n"
            "USER 2000:2000\n"
        )
        podman("build", "--network", "none", "-t", broken, str(tmp_path))
    kube_play.settings = settings.model_copy(update={"images": {**settings.images, "blender": broken}})
    plan = plan_run()
    pipeline.fetch(plan)
    with pytest.raises(JobFailed) as e:
        pipeline.build(plan)
    message = str(e.value)
    assert "exited with status 3" in message
    assert message.splitlines()[-1].startswith("build: error: Python module 'mido' is missing"), message
