"""`make images` for real: both images built with podman, their references recorded, the Jobs' image the
recorded one, and each entrypoint run as uid 2000 with a read-only root filesystem and no network."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from renderlab import image_refs, pipeline
from renderlab.jobs import JobResult

from .conftest import CONFIG, REPO, KubePlay, podman

pytestmark = [pytest.mark.container, pytest.mark.slow]


def test_make_images_records_what_it_built_and_a_second_run_builds_nothing(record, refs):
    assert set(refs) == {"blender", "fetch"}
    for name, r in refs.items():
        assert r.ref.startswith(f"127.0.0.1:30500/renderlab-{name}:")
        assert podman("image", "inspect", "--format", "{{.Id}}", r.ref).stdout.strip() == r.image_id
        assert r.digest.startswith("sha256:") and r.pushed_to is None
    env = {**os.environ, image_refs.RECORD_ENV: str(record), "PYTHONPATH": str(REPO)}
    again = subprocess.run(
        [sys.executable, "-m", "renderlab.images", "build", "--push", "never", "--config", str(CONFIG)],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    assert again.stderr.count("is up to date (nothing to build)") == 2, again.stderr
    assert image_refs.load(record) == refs
    # It prints each reference with its digest and size.
    assert [line.split()[:3] for line in again.stdout.splitlines()] == [
        [n, refs[n].ref, refs[n].digest] for n in ("blender", "fetch")
    ]


def test_blender_image_stays_under_2_5_gb(refs):
    assert refs["blender"].size_bytes < 2.5e9, f"{refs['blender'].size_bytes / 1e9:.2f} GB"


@pytest.mark.parametrize(
    ("name", "argv", "expect"),
    [
        ("fetch", ["--help"], "usage: python -m images.fetch"),
        ("blender", ["python", "-m", "blender_scripts.render", "--help"], "--blend"),
        ("blender", ["python", "-m", "renderlab.build_step", "--help"], "--project"),
        ("blender", ["python", "-m", "renderlab.assemble", "--help"], "--contact-sheet"),
        ("blender", ["python", "-m", "renderlab.validate", "--help"], "--spec"),
        ("blender", ["python", "-c", "import bpy; print(bpy.app.version_string)"], "5.0.1"),
    ],
)
def test_entrypoints_run_as_uid_2000_read_only_without_network(refs, name, argv, expect):
    res = podman(
        "run", "--rm", "--read-only", "--user", "2000:2000", "--network", "none", refs[name].ref, *argv
    )
    assert expect in res.stdout


def test_every_job_kind_references_the_image_make_images_built(settings, refs, tmp_path):
    """The DAG's Jobs (from its own task functions) get exactly the recorded references: nothing recomputed."""
    backend = KubePlay(settings, tmp_path)
    specs = []

    class Recorder:
        def run(self, spec, log, context=None):
            specs.append(spec)
            return JobResult(name=spec.name, exit_code=0, result=RESULTS[spec.name.split("-")[0]], seconds=0)

    from unittest import mock

    ctx = {"params": {"song": "ode_waltz", "frames": "1-2"}, "run_id": "manual__2026-01-01T00:00:00+00:00"}
    with mock.patch("renderlab.settings.load", return_value=settings), \
         mock.patch("renderlab.backends.get", return_value=Recorder()):  # fmt: skip
        plan = pipeline.plan(ctx)
        pipeline.fetch(plan)
        built = pipeline.build(plan)
        rendered = [pipeline.render_chunk(plan, c) for c in pipeline.chunks(plan, built)]
        pipeline.validate(plan, built, pipeline.assemble(plan, built, rendered))
    kinds = {s.name.split("-")[0]: s.image for s in specs}
    assert kinds == {"fetch": "fetch", "build": "blender", "render": "blender", "assemble": "blender",
                     "validate": "blender"}  # fmt: skip
    for spec in specs:
        [container] = backend.pod(spec)["spec"]["containers"]
        assert container["image"] == refs[spec.image].ref
        assert podman("image", "inspect", "--format", "{{.Id}}", container["image"]).stdout.strip() == (
            refs[spec.image].image_id
        )


RESULTS = {
    "fetch": {"files_transferred": 1},
    "build": {"blend": "s.blend", "frames": [1, 100], "fps": 60, "wav": "s.wav", "report": "r.json"},
    "render": {"rendered": 2},
    "assemble": {"video": "v.mp4", "contact_sheet": "c.png"},
    "validate": {"ok": True},
}
