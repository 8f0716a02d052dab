"""The rehearsal's image import, without a lab: the references `make images --push never` records are exactly
the ones every Job of the DAG runs, with a pull policy that takes an imported image as it is; the plan puts each
on every node that lacks it, and refuses what an import cannot satisfy."""

from __future__ import annotations

from unittest import mock

import pytest

from renderlab.lab import image_refs
from renderlab.lab.config import load
from renderlab.lab.pipeline_settings import pipeline_settings, recorded_images
from renderlab.pipeline.backends import kubernetes as kb
from renderlab.pipeline.settings import Settings
from renderlab.workstation.nspawn_lab.options import ROOT
from tests.pipeline.dag_jobs import dag_specs
from tests.rehearsal import node_images
from tests.rehearsal.node_images import Import, NotImportable

STACK = ROOT / "Pulumi.example.yaml"


@pytest.fixture
def never_pushed(tmp_path):
    """The records `make images --push never` leaves for the example stack: tags, no digest."""
    with mock.patch.object(image_refs, "RECORDS", tmp_path):
        for name in ("blender", "fetch", "docs"):
            image_refs.record(STACK, name, name[0] * 16, None, built={"image_id": "x"})
        yield recorded_images(load(STACK), str(STACK))


def test_every_job_runs_an_imported_reference_and_never_pulls_it(never_pushed):
    config = load(STACK)
    refs = never_pushed
    assert set(refs) == set(image_refs.JOB_IMAGES)  # docs is the cluster's, not a Job's
    node_images.check(refs, str(STACK))
    settings = Settings.model_validate({**pipeline_settings(config, refs), "share_root": "/mnt/render"})
    imported = {
        step.ref for step in node_images.plan(refs, {"control-plane": set(), "worker": set()}, str(STACK))
    }
    with mock.patch(
        "airflow.providers.cncf.kubernetes.hooks.kubernetes.KubernetesHook.is_in_cluster",
        new_callable=mock.PropertyMock,
        return_value=False,
    ):
        jobs = [kb.build_job(spec, settings) for spec in dag_specs(settings)]
    containers = [c for job in jobs for c in job.spec.template.spec.containers]
    assert {c.image for c in containers} == imported == set(refs.values())
    assert {c.image_pull_policy for c in containers} == {"IfNotPresent"}


def test_each_image_goes_to_every_node_that_lacks_that_exact_reference(never_pushed):
    refs = never_pushed
    old_blender = refs["blender"].rsplit(":", 1)[0] + ":" + "0" * 16  # an earlier build of the same image
    present = {"control-plane": {refs["fetch"], "registry.k8s.io/pause:3.10.1"}, "worker": {old_blender}}
    assert node_images.plan(refs, present, str(STACK)) == [
        Import("blender", refs["blender"], ("control-plane", "worker")),
        Import("fetch", refs["fetch"], ("worker",)),
    ]
    present = {node: have | set(refs.values()) for node, have in present.items()}
    assert node_images.plan(refs, present, str(STACK)) == []  # a second session imports nothing


def test_a_digest_pinned_or_missing_reference_is_refused_with_the_build_that_fixes_it(never_pushed):
    refs = dict(never_pushed)
    refs["fetch"] += "@sha256:" + "0" * 64  # what a push to the lab registry records
    with pytest.raises(NotImportable, match=r"fetch reference is pinned to a pushed digest .*--push never"):
        node_images.plan(refs, {"control-plane": set()}, str(STACK))
    with pytest.raises(
        NotImportable, match=r"no blender image recorded .*--only blender --only fetch --push never"
    ):
        node_images.check({"fetch": never_pushed["fetch"]}, str(STACK))


def test_ctr_listing_and_the_archive_ctr_reads():
    assert node_images.listed("a:1\n\n  b@sha256:00  \n") == {"a:1", "b@sha256:00"}
    cmd = node_images.save_command("podman", "127.0.0.1:30500/renderlab-fetch:t", "/x/fetch.tar")
    assert cmd == [
        "podman",
        "save",
        "--format",
        "docker-archive",
        "-o",
        "/x/fetch.tar",
        "127.0.0.1:30500/renderlab-fetch:t",
    ]
    assert node_images.save_command("docker", "r:t", "/x/a.tar") == [
        "docker",
        "save",
        "-o",
        "/x/a.tar",
        "r:t",
    ]
