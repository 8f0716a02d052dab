"""k8s/ is the rendered cluster layer for the example stack, and every manifest passes kubernetes-validate."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import kubernetes_validate
import yaml

from infra import manifests
from renderlab.lab.config import load

ROOT = Path(__file__).resolve().parents[2]


def test_k8s_folder_is_up_to_date():
    files = manifests.render(load(ROOT / "Pulumi.example.yaml"), "Pulumi.example.yaml")
    on_disk = {p.name: p.read_text() for p in (ROOT / "k8s").glob("*.yaml")}
    stale = sorted(n for n in set(files) | set(on_disk) if files.get(n) != on_disk.get(n))
    assert not stale, f"k8s/ is out of date ({stale}); run `make cluster-manifests`"


def test_every_manifest_is_valid_strict():
    count = 0
    for path in sorted((ROOT / "k8s").glob("*.yaml")):
        if path.name == "kustomization.yaml":
            continue
        for doc in yaml.safe_load_all(path.read_text()):
            kubernetes_validate.validate(doc, "1.31", strict=True)
            count += 1
    assert count == 25  # + the registry's TLS and htpasswd Secrets


def test_strict_validation_catches_a_typo():
    doc = yaml.safe_load((ROOT / "k8s" / "launcher-rbac.yaml").read_text().split("---\n")[2])
    doc["rules"][0]["verb"] = ["get"]
    try:
        kubernetes_validate.validate(doc, "1.31", strict=True)
    except kubernetes_validate.ValidationError as err:
        assert "verb" in str(err)
    else:
        raise AssertionError("a misspelt key passed strict validation")


def test_secret_values_are_empty_in_git():
    """Every key the generator fills from a secret input (found by rendering with sentinel values, not a
    list typed here) is in k8s/ and empty there."""
    from infra import manifests

    sentinels = {name: f"sentinel-{name}" for name in manifests.SECRET_INPUTS + manifests.REGISTRY_INPUTS}
    rendered = manifests.all_objects(load(ROOT / "Pulumi.example.yaml"), sentinels)
    secret_keys = {
        (obj["metadata"]["name"], key)
        for objs in rendered.values()
        for obj in objs
        for key, value in (obj.get("stringData") or {}).items()
        if value in sentinels.values()
    }
    assert len(secret_keys) >= len(sentinels)  # each secret input lands somewhere
    in_git = {
        (doc["metadata"]["name"], key): value
        for path in sorted((ROOT / "k8s").glob("*.yaml"))
        for doc in yaml.safe_load_all(path.read_text())
        if doc.get("kind") == "Secret"
        for key, value in (doc.get("stringData") or {}).items()
    }
    assert {k: in_git.get(k, "<missing>") for k in secret_keys} == dict.fromkeys(secret_keys, "")


def test_generator_cli_writes_and_rejects_bad_config(tmp_path):
    ok = subprocess.run(
        [sys.executable, "-m", "infra.manifests", str(ROOT / "Pulumi.example.yaml"), str(tmp_path)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    assert ok.returncode == 0 and len(list(tmp_path.glob("*.yaml"))) == 9
    bad = ROOT / "tests/fixtures/config/invalid/memory-too-small.yaml"
    out = tmp_path / "bad"
    res = subprocess.run(
        [sys.executable, "-m", "infra.manifests", str(bad), str(out)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    assert res.returncode == 1 and "memory_mib" in res.stderr and not out.exists()


def _docs_image(objs: list[dict]) -> str:
    (deploy,) = [o for o in objs if o["kind"] == "Deployment"]
    (container,) = deploy["spec"]["template"]["spec"]["containers"]
    return container["image"]


def test_docs_deployment_runs_the_image_make_images_recorded(tmp_path, monkeypatch):
    """The seam with `make images`: the docs Deployment's image is image_refs' pull reference for 'docs'
    (digest-pinned once pushed), the way infra/program.py passes it; k8s/ keeps a placeholder."""
    from renderlab.lab import image_refs

    monkeypatch.setattr(image_refs, "RECORDS", tmp_path)
    config = load(ROOT / "Pulumi.example.yaml")
    stack = "Pulumi.example.yaml"
    values = dict.fromkeys(manifests.SECRET_INPUTS + manifests.REGISTRY_INPUTS, "")
    assert image_refs.pull_ref(config, stack, "docs") is None  # nothing built: the placeholder
    placeholder = manifests.docs_image(config, manifests.DOCS_TAG_EXAMPLE)
    assert f"image: {placeholder}\n" in (ROOT / "k8s" / "docs.yaml").read_text()
    assert _docs_image(manifests.all_objects(config, values)["docs.yaml"]) == placeholder
    for digest in (None, "sha256:" + "d" * 64):
        image_refs.record(stack, "docs", "0123456789abcdef", digest)
        want = image_refs.pull_refs(config, image_refs.recorded(stack))["docs"]
        got = image_refs.pull_ref(config, stack, "docs")
        assert got == want and want.startswith("127.0.0.1:30500/renderlab-docs:0123456789abcdef")
        assert want.endswith(digest or "0123456789abcdef")
        assert _docs_image(manifests.all_objects(config, values, docs_image=got)["docs.yaml"]) == want


def test_the_render_and_docs_namespaces_enforce_restricted_pods_and_the_docs_pod_meets_it():
    from tests import pod_security

    config = load(ROOT / "Pulumi.example.yaml")
    labels = {o["metadata"]["name"]: o["metadata"]["labels"] for o in manifests.namespace(config)}
    minor = "v" + ".".join(config.kubernetes.version.split(".")[:2])
    for ns, level in ((config.pipeline.namespace, "restricted"), (manifests.DOCS_NS, "restricted"),
                      (manifests.REGISTRY_NS, "baseline")):  # fmt: skip
        assert labels[ns]["pod-security.kubernetes.io/enforce"] == level, ns
        assert labels[ns]["pod-security.kubernetes.io/enforce-version"] == minor, ns
        assert labels[ns]["pod-security.kubernetes.io/warn"] == "restricted", ns
    (docs,) = [o for o in manifests.docs(config) if o["kind"] == "Deployment"]
    assert pod_security.violations(docs["spec"]["template"]["spec"]) == []
