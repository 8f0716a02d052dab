"""make k8s-artifacts: the wrappers pin what the lab config pins, and the built folder keeps its contract
(renderlab/workstation/k8s_artifacts.py): every file, the pinned versions, the images kubeadm names,
importable archives, and a second run that builds nothing.

The folder tests need the built folder; without it they skip and name the build (CI builds it first).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import tarfile
import tempfile
import time
from pathlib import Path

import pytest

from infra import manifests
from renderlab.lab.config import load
from renderlab.workstation import k8s_artifacts as ka
from renderlab.workstation import k8s_go, k8s_images
from renderlab.workstation.oci_archive import read_index

REPO = Path(__file__).resolve().parents[2]
CONFIG = load(REPO / "Pulumi.example.yaml")
K, REG = CONFIG.kubernetes, CONFIG.versions.registry
CACHE = ka.default_cache(K.version)
CONTAINERS_CONF = REPO / "images" / "containers.conf"


# --- without the folder ------------------------------------------------------------------------------------


def test_every_wrapper_module_requires_what_the_lab_config_pins():
    mods = k8s_go.modules(K, REG)
    k8s_go.check_pins(mods)  # raises with the `go get` that aligns them
    assert {m.name for m in mods} == {p.name for p in k8s_go.WRAPPERS.iterdir() if p.name != "vuln"}


def test_the_registry_wrapper_is_built_at_versions_registry_with_its_release_ldflags():
    mods = {m.name: m for m in k8s_go.modules(K, "3.1.1")}
    reg = mods["registry"]
    assert reg.module == "github.com/distribution/distribution/v3" and reg.version == "v3.1.1"
    args = k8s_go.build_args(reg, "abc123", "d")
    ldflags = args[args.index("-ldflags") + 1]
    assert "-X github.com/distribution/distribution/v3/version.version=3.1.1" in ldflags
    assert "-X github.com/distribution/distribution/v3/version.revision=abc123" in ldflags
    with pytest.raises(k8s_go.GoBuildError, match="pins github.com/distribution/distribution/v3 v3.0.0 but"):
        k8s_go.check_pins(k8s_go.modules(K, "3.0.0"))


def test_a_pin_the_wrapper_does_not_hold_is_one_clear_error():
    other = K.model_copy(update={"coredns": "1.12.0"})
    with pytest.raises(k8s_go.GoBuildError) as e:
        k8s_go.check_pins(k8s_go.modules(other, REG))
    msg = str(e.value)
    assert (
        "pins github.com/coredns/coredns v1.12.0 but tools/kubernetes/coredns/go.mod requires v1.13.1" in msg
    )
    assert "go get github.com/coredns/coredns@v1.12.0 && go mod tidy" in msg


def test_required_version_reads_block_and_single_requires():
    gomod = "module x\n\nrequire k8s.io/kubernetes v1.35.8\n\nrequire (\n\tgo.etcd.io/etcd/server/v3 v3.6.6 // indirect\n)\n"
    assert k8s_go.required_version(gomod, "k8s.io/kubernetes") == "v1.35.8"
    assert k8s_go.required_version(gomod, "go.etcd.io/etcd/server/v3") == "v3.6.6"
    assert k8s_go.required_version(gomod, "go.etcd.io/etcd") is None


def test_version_ldflags_are_upstreams():
    mods = {m.name: m for m in k8s_go.modules(K, REG)}
    args = k8s_go.build_args(mods["kubernetes"], "abc123", "2026-08-20T15:16:14Z")
    ldflags = args[args.index("-ldflags") + 1]
    for setting in (
        "gitVersion=v1.35.8",
        "gitMajor=1",
        "gitMinor=35",
        "gitTreeState=clean",
        "gitCommit=abc123",
    ):
        assert f"-X k8s.io/component-base/version.{setting}" in ldflags
    runc = k8s_go.build_args(mods["runc"], "abc123", "d")
    assert (
        "-extldflags -static" in runc[runc.index("-ldflags") + 1]
        and "seccomp" in runc[runc.index("-tags") + 1]
    )


def test_the_images_are_the_ones_kubeadm_1_35_names():
    assert sorted(k8s_images.kubeadm_refs(K).values()) == [
        "registry.k8s.io/coredns/coredns:v1.13.1",
        "registry.k8s.io/etcd:3.6.6-0",
        "registry.k8s.io/kube-apiserver:v1.35.8",
        "registry.k8s.io/kube-controller-manager:v1.35.8",
        "registry.k8s.io/kube-proxy:v1.35.8",
        "registry.k8s.io/kube-scheduler:v1.35.8",
        "registry.k8s.io/pause:3.10.1",
    ]


def test_a_binary_at_another_version_is_refused(tmp_path: Path):
    fake = tmp_path / "kubelet"
    fake.write_text("#!/bin/sh\necho 'Kubernetes v0.0.0-master+$Format:%H$'\n")
    fake.chmod(0o755)
    with pytest.raises(ka.ArtifactsError, match="reports 'Kubernetes v0.0.0-master"):
        ka.reported_version(fake, ["--version"], "Kubernetes v1.35.8")


def _layer_registry_image() -> str:
    """The registry image the cluster layer runs (infra/manifests.py)."""
    values = {"registry_tls_crt": "", "registry_tls_key": "", "registry_htpasswd": ""}
    (deploy,) = [o for o in manifests.registry(CONFIG, values) if o["kind"] == "Deployment"]
    return deploy["spec"]["template"]["spec"]["containers"][0]["image"]


# --- the built folder --------------------------------------------------------------------------------------

built = pytest.mark.skipif(
    not (CACHE / ka.READY).exists(), reason=f"no Kubernetes artifacts at {CACHE}: run `make k8s-artifacts`"
)


def _manifest() -> dict:
    return json.loads((CACHE / ka.MANIFEST).read_text())


@built
def test_manifest_lists_every_file_of_the_contract_with_its_digest():
    m = _manifest()
    expected = (
        {f"bin/{b}" for b in ka.NODE_BINARIES}
        | {f"cni/bin/{p}" for p in ka.CNI_PLUGINS}
        | {f"images/{n}.tar" for n in k8s_images.all_refs(K, REG)}
    )
    assert set(m["files"]) == expected
    for rel, info in m["files"].items():
        path = CACHE / rel
        assert path.stat().st_size == info["size"], rel
        assert hashlib.sha256(path.read_bytes()).hexdigest() == info["sha256"], rel
    assert m["kubernetes_version"] == "v1.35.8"
    assert m["versions"]["containerd"] == "2.2.10" and m["versions"]["kube_router"] == "2.1.0"
    assert m["sandbox_image"] == "registry.k8s.io/pause:3.10.1"
    assert m["kube_router_image"] == "renderlab.local/kube-router:v2.1.0"
    # The cluster layer's `registry:<versions.registry>`, as containerd names it.
    assert (
        m["registry_image"]
        == "docker.io/library/registry:3.1.1"
        == f"docker.io/library/{_layer_registry_image()}"
    )
    assert m["versions"]["registry"] == "3.1.1"


@built
def test_the_built_kubeadm_names_exactly_the_images_in_the_folder():
    names = ka.kubeadm_images(CACHE / "bin" / "kubeadm", K.version)
    images = _manifest()["images"]
    assert sorted(set(images) - {_manifest()["kube_router_image"], _manifest()["registry_image"]}) == names
    assert _manifest()["sandbox_image"] in names


@built
def test_every_archive_names_its_image_and_its_blobs_hold():
    for ref, info in _manifest()["images"].items():
        archive = CACHE / info["archive"]
        (entry,) = read_index(archive)
        assert entry["annotations"]["io.containerd.image.name"] == ref
        assert entry["digest"] == info["digest"]
        with tarfile.open(archive) as tar:
            for member in tar.getmembers():
                if member.name.startswith("blobs/sha256/") and member.isfile():
                    data = tar.extractfile(member).read()
                    assert hashlib.sha256(data).hexdigest() == member.name.rsplit("/", 1)[1], (
                        ref,
                        member.name,
                    )


@built
def test_every_binary_reports_the_pinned_version():
    versions = ka.expected_versions(K, REG)
    for sub, names in (("bin", ka.NODE_BINARIES), ("cni/bin", ka.CNI_PLUGINS)):
        for name in names:
            args, want = versions[name]
            assert want in ka.reported_version(CACHE / sub / name, args, want)


def _podman(tmp_path: Path):
    """podman on a store of its own under tmp_path: podman(*args, check=True) -> its output."""
    run = Path(tempfile.mkdtemp(prefix="rl-podman-", dir="/tmp"))  # podman refuses a runroot over 50 chars
    store = ["--root", str(tmp_path / "root"), "--runroot", str(run), "--storage-driver", "vfs"]
    env = {**os.environ, "CONTAINERS_CONF": str(CONTAINERS_CONF)}

    def podman(*args: str, check: bool = True) -> str:
        proc = subprocess.run(
            ["podman", *store, *args], capture_output=True, text=True, env=env, timeout=300, check=False
        )
        assert proc.returncode == 0 or not check, proc.stderr[-800:]
        return proc.stdout + proc.stderr

    return podman


@built
@pytest.mark.skipif(not shutil.which("podman"), reason="needs podman (make setup)")
def test_archives_load_into_podman_and_the_iptables_image_runs(tmp_path: Path):
    """podman reads the archives as any OCI archive; kube-proxy's image runs its binary and Debian's iptables."""
    podman = _podman(tmp_path)

    for name in ("pause", "kube-proxy"):
        ref = k8s_images.all_refs(K, REG)[name]
        assert f"Loaded image: {ref}" in podman("load", "-i", str(CACHE / "images" / f"{name}.tar"))
    proxy = k8s_images.all_refs(K, REG)["kube-proxy"]
    out = podman("run", "--rm", "--network", "none", "--entrypoint", "/usr/sbin/iptables", proxy, "--version")
    assert "iptables v1.8.9 (nf_tables)" in out
    out = podman("run", "--rm", "--network", "none", proxy, "--version")
    assert "Kubernetes v1.35.8" in out


@built
def test_a_second_run_builds_nothing():
    before = (CACHE / ka.MANIFEST).stat().st_mtime_ns
    result = ka.build(K, REG, CACHE, log=lambda _m: None)
    assert result["built"] == [] and result["assembled"] is False
    assert (CACHE / ka.MANIFEST).stat().st_mtime_ns == before
    assert (CACHE / ka.READY).exists()


@built
@pytest.mark.skipif(not shutil.which("podman"), reason="needs podman (make setup)")
def test_the_registry_image_serves_from_its_own_config(tmp_path: Path):
    """The lab registry's air-gap image starts as the cluster layer runs it (no command given): its config file
    is read and it listens on :5000 (pushes to it: the make lab run, tests/lab/test_make_lab.py)."""
    podman = _podman(tmp_path)

    ref = _manifest()["registry_image"]
    assert f"Loaded image: {ref}" in podman("load", "-i", str(CACHE / "images" / "registry.tar"))
    name = "rl-registry-probe"
    podman("run", "-d", "--name", name, "--network", "none", ref)
    try:
        logs = ""
        for _ in range(60):
            logs = podman("logs", name)
            if "listening on" in logs:
                break
            time.sleep(0.5)
        assert "listening on [::]:5000" in logs, logs[-800:]
        assert "version=3.1.1" in logs, logs[-800:]
    finally:
        podman("rm", "-f", name, check=False)
