"""`make images` for real: the three images built with podman, their references recorded, the Jobs' image the
recorded one, and each entrypoint run as uid 2000 with a read-only root filesystem and no network."""

from __future__ import annotations

import pytest

from renderlab.lab import config, image_refs
from tests.pipeline.dag_jobs import dag_specs

from .conftest import CONFIG, KubePlay, make_images, podman

pytestmark = [pytest.mark.container, pytest.mark.slow]


def test_make_images_records_what_it_built_and_a_second_run_builds_nothing(built):
    assert set(built) == {"blender", "fetch", "docs"}
    for name, entry in built.items():
        assert entry["ref"] == f"127.0.0.1:30500/renderlab-{name}:{entry['tag']}"  # not pushed: no digest
        assert (
            podman("image", "inspect", "--format", "{{.Id}}", entry["ref"]).stdout.strip()
            == (entry["built"]["image_id"])
        )
        assert entry["built"]["pushed_to"] is None
    again = make_images()
    assert again.returncode == 0, again.stderr
    assert again.stderr.count("is up to date (nothing to build)") == 3, again.stderr
    assert "not pushed" not in again.stderr  # --push never: not even tried
    assert {n: e["tag"] for n, e in image_refs.recorded(CONFIG).items()} == {
        n: e["tag"] for n, e in built.items()
    }
    # It prints each reference with its (local) digest and size.
    assert [line.split()[:2] for line in again.stdout.splitlines()] == [
        [n, built[n]["ref"]] for n in ("blender", "fetch", "docs")
    ]


def test_blender_image_stays_under_2_5_gb(built):
    size = built["blender"]["built"]["size_bytes"]
    assert 0 < size < 2.5e9, f"{size / 1e9:.2f} GB"


@pytest.mark.parametrize(
    ("name", "argv", "expect"),
    [
        ("fetch", ["--help"], "usage: python -m renderlab.jobs.fetch"),
        ("blender", ["python", "-m", "blender_scripts.render", "--help"], "--blend"),
        ("blender", ["python", "-m", "renderlab.jobs.build_step", "--help"], "--project"),
        ("blender", ["python", "-m", "renderlab.jobs.assemble", "--help"], "--contact-sheet"),
        ("blender", ["python", "-m", "renderlab.jobs.validate", "--help"], "--spec"),
        ("blender", ["python", "-c", "import bpy; print(bpy.app.version_string)"], "5.0.1"),
    ],
)
def test_entrypoints_run_as_uid_2000_read_only_without_network(built, name, argv, expect):
    ref = built[name]["ref"]
    res = podman("run", "--rm", "--read-only", "--user", "2000:2000", "--network", "none", ref, *argv)
    assert expect in res.stdout


def test_every_job_kind_references_the_image_make_images_built(settings, built, tmp_path):
    """The DAG's Jobs (from its own task functions) get exactly the recorded references: nothing recomputed."""
    specs = dag_specs(settings)
    assert {s.name.split("-")[0] for s in specs} == {"fetch", "build", "render", "assemble", "validate"}
    backend = KubePlay(settings, tmp_path)
    for spec in specs:
        [container] = backend.pod(spec)["spec"]["containers"]
        assert container["image"] == built[spec.image]["ref"]
        image_id = podman("image", "inspect", "--format", "{{.Id}}", container["image"]).stdout.strip()
        assert image_id == built[spec.image]["built"]["image_id"]
    assert config.load(CONFIG).share.uid == settings.run_as_uid == 2000
