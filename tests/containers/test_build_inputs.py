"""What goes into the images, checked without an engine: requirement subsets equal to the lock and complete,
digest-pinned bases, build contexts that are exactly what the Dockerfiles copy, content tags, the record."""

from __future__ import annotations

import importlib.metadata as md
import re

import pytest
from packaging.requirements import Requirement

from renderlab.lab import config, image_refs
from renderlab.workstation import images

from .conftest import CONFIG, REPO


@pytest.mark.parametrize("name", sorted(images.IMAGE_ROOTS))
def test_requirement_files_are_the_locks_entries(name):
    assert images.requirements_path(name).read_text() == images.pick_requirements(
        images.LOCK.read_text(), images.IMAGE_ROOTS[name]
    ), (
        f"{images.requirements_path(name).name} is stale: run `python -m renderlab.workstation.images requirements`"
    )


@pytest.mark.parametrize("name", sorted(images.IMAGE_ROOTS))
def test_requirement_subsets_hold_every_dependency(name):
    """Each package's own Requires-Dist (this platform, no extras) is in the image's subset: pip's
    --require-hashes install cannot reach for anything else."""
    subset = set(images.closure(images.LOCK.read_text(), images.IMAGE_ROOTS[name]))
    for pkg in subset:
        for text in md.requires(pkg) or []:
            req = Requirement(text)
            if req.marker is None or req.marker.evaluate({"extra": ""}):
                assert req.name.lower().replace("_", "-") in subset, f"{pkg} needs {req.name}"


def test_blender_version_in_the_lab_config_is_the_locked_bpy():
    pin = re.search(r"^bpy==(\S+)", images.LOCK.read_text(), re.M).group(1)
    assert config.load(CONFIG).versions.blender == pin


@pytest.mark.parametrize("name", images.NAMES)
def test_dockerfiles_start_from_a_digest_pinned_base_and_end_non_root(name):
    text = images.dockerfile(name).read_text()
    assert re.fullmatch(r"debian:12-slim@sha256:[0-9a-f]{64}", images.official_base(name))
    assert images.official_base(name) == images.official_base("blender")
    assert re.findall(r"^FROM (\S+)", text, re.M) == ["${BASE}"]
    if name == "docs":  # nginx and the built site: no Python, its own uid (infra.manifests.DOCS_UID)
        assert re.findall(r"^USER (\S+)", text, re.M) == ["${DOCS_UID}"]
        assert images.declared_args(name) == {"BASE", "DOCS_UID"}
        return
    assert re.findall(r"^USER (\S+)", text, re.M) == ["${RENDER_UID}:${RENDER_UID}"]
    assert "--require-hashes" in text and f"requirements/image-{name}.txt" in text


def test_the_build_context_is_exactly_what_copy_names(tmp_path, monkeypatch):
    monkeypatch.setattr(images, "STAGE", tmp_path)
    ctx = images.stage("fetch")
    staged = {str(p.relative_to(ctx)) for p in ctx.rglob("*") if p.is_file()}
    want = {"images/fetch/Dockerfile", "requirements/image-fetch.txt", "renderlab/__init__.py",
            "renderlab/jobs/__init__.py", "renderlab/base/__init__.py", "renderlab/base/share.py",
            "renderlab/base/atomic.py"}  # fmt: skip
    want |= {str(p.relative_to(REPO)) for p in (REPO / "renderlab/jobs/fetch").glob("*.py")}
    assert staged == want
    blender = images.stage("blender")
    assert not list(blender.rglob("__pycache__"))
    assert {p.name for p in (blender / "renderlab").iterdir()} == {"__init__.py", "jobs", "base"}
    assert not (blender / "renderlab/jobs/fetch").exists()  # the fetch's package is the fetch image's


def test_tags_follow_what_the_image_copies_and_nothing_else(tmp_path, monkeypatch):
    (tmp_path / "images/x").mkdir(parents=True)
    (tmp_path / "images/x/Dockerfile").write_text("ARG BASE=b\nFROM ${BASE}\nCOPY a.py lib /app/\n")
    (tmp_path / "a.py").write_text("1")
    (tmp_path / "lib").mkdir()
    (tmp_path / "lib/m.py").write_text("m")
    (tmp_path / "other.py").write_text("o")
    monkeypatch.setattr(images, "REPO", tmp_path)
    tag = images.content_tag("x", {"BASE": "b"})
    assert tag == images.content_tag("x", {"BASE": "b"})
    assert tag != images.content_tag("x", {"BASE": "c"})
    (tmp_path / "other.py").write_text("changed")
    assert images.content_tag("x", {"BASE": "b"}) == tag
    (tmp_path / "lib/m.py").write_text("changed")
    assert images.content_tag("x", {"BASE": "b"}) != tag
    (tmp_path / "lib/__pycache__").mkdir()
    (tmp_path / "lib/__pycache__/m.cpython-311.pyc").write_bytes(b"x")
    (tmp_path / "a.py").unlink()
    with pytest.raises(images.ImageError, match="copies a.py, which does not exist"):
        images.content_tag("x")


@pytest.mark.slow  # two site builds
def test_the_docs_context_is_the_site_mkdocs_builds_and_its_tag_follows_it(tmp_path, monkeypatch):
    """build/site in the Dockerfile is the site `make images` builds (strict), not whatever build/site holds."""
    monkeypatch.setattr(images, "STAGE", tmp_path / "ctx")
    monkeypatch.setattr(images, "_made", set())
    ctx = images.stage("docs")
    staged = {str(p.relative_to(ctx)) for p in ctx.rglob("*") if p.is_file()}
    site = {f"build/site/{p.relative_to(images.SITE)}" for p in images.SITE.rglob("*") if p.is_file()}
    assert staged == {"images/docs/Dockerfile", "images/docs/nginx.conf.template"} | site
    assert "build/site/index.html" in site and "build/site/reference/config/index.html" in site
    # The same docs give the same site (the sitemap's date is the docs' last commit), so the same tag.
    tag = images.content_tag("docs", {"BASE": "b"})
    monkeypatch.setattr(images, "_made", set())
    assert images.content_tag("docs", {"BASE": "b"}) == tag
    # A change to the built site is a new tag.
    page = images.SITE / "index.html"
    page.write_text(page.read_text() + "<!-- changed -->")
    assert images.content_tag("docs", {"BASE": "b"}) != tag
    monkeypatch.setattr(images, "_made", set())
    assert images.content_tag("docs", {"BASE": "b"}) == tag  # rebuilt from the docs: back to the same site


def test_the_record_keeps_what_was_built_out_of_the_reference(tmp_path, monkeypatch):
    monkeypatch.setattr(image_refs, "RECORDS", tmp_path)
    info = {"image_id": "i" * 64, "local_digest": "sha256:" + "1" * 64, "base": "b", "size_bytes": 1}
    image_refs.record(CONFIG, "fetch", "f" * 16, None, built=info)
    image_refs.record(CONFIG, "blender", "b" * 16, "sha256:" + "2" * 64, built=info)
    assert image_refs.recorded(CONFIG)["fetch"] == {"tag": "f" * 16, "built": info}
    assert image_refs.pull_refs(config.load(CONFIG), image_refs.recorded(CONFIG)) == {
        "blender": f"127.0.0.1:30500/renderlab-blender:{'b' * 16}@sha256:{'2' * 64}",
        "fetch": f"127.0.0.1:30500/renderlab-fetch:{'f' * 16}",
    }


def test_no_engine_is_one_clear_error(monkeypatch, capsys):
    monkeypatch.setattr(images.shutil, "which", lambda tool: None)
    assert images.main(["build", "--push", "never"]) == 2
    err = capsys.readouterr().err
    assert "no working container engine" in err and "install podman and runc" in err.lower()
