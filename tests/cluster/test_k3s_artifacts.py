"""make k3s-artifacts: the pause image archive is a valid, reproducible OCI image; the k3s step fails clearly."""

from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
import subprocess
import tarfile
from pathlib import Path

import pytest

from renderlab.workstation import k3s_artifacts as ka

BINARY = b"\x7fELF-not-really-catatonit" * 10
REF = "renderlab.local/pause:catatonit-test"


def _members(archive: bytes) -> dict[str, tarfile.TarInfo | bytes]:
    out = {}
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        for m in tar.getmembers():
            out[m.name] = tar.extractfile(m).read() if m.isfile() else m
    return out


def _blob(files, digest: str) -> bytes:
    data = files[f"blobs/sha256/{digest.split(':')[1]}"]
    assert "sha256:" + hashlib.sha256(data).hexdigest() == digest, "blob content does not match its digest"
    return data


def test_pause_image_is_an_oci_layout_whose_digests_hold():
    files = _members(ka.pause_image(BINARY, REF))
    assert json.loads(files["oci-layout"]) == {"imageLayoutVersion": "1.0.0"}
    (entry,) = json.loads(files["index.json"])["manifests"]
    assert entry["annotations"]["io.containerd.image.name"] == REF
    assert entry["annotations"]["org.opencontainers.image.ref.name"] == "catatonit-test"
    manifest = json.loads(_blob(files, entry["digest"]))
    assert len(_blob(files, entry["digest"])) == entry["size"]
    config = json.loads(_blob(files, manifest["config"]["digest"]))
    (layer_desc,) = manifest["layers"]
    layer = _blob(files, layer_desc["digest"])
    # Uncompressed layer: its digest is also its diff_id.
    assert config["rootfs"]["diff_ids"] == [layer_desc["digest"]]
    assert config["config"]["Entrypoint"] == ["/pause", "-P"]
    with tarfile.open(fileobj=io.BytesIO(layer)) as tar:
        (pause,) = tar.getmembers()
        assert pause.name == "pause" and pause.mode == 0o755 and pause.uid == 0
        assert tar.extractfile(pause).read() == BINARY


def test_pause_image_is_reproducible_and_follows_its_input():
    assert ka.pause_image(BINARY, REF) == ka.pause_image(BINARY, REF)
    assert ka.pause_image(BINARY, REF) != ka.pause_image(BINARY + b"x", REF)


@pytest.mark.skipif(
    not ka.CATATONIT.exists() or not shutil.which("zstd"), reason="needs catatonit and zstd (make setup)"
)
def test_second_run_builds_no_images(tmp_path: Path):
    first, built1 = ka.build_pause_images(tmp_path, log=lambda _m: None)
    mtime = first.stat().st_mtime_ns
    second, built2 = ka.build_pause_images(tmp_path, log=lambda _m: None)
    assert (built1, built2) == (True, False)
    assert second.stat().st_mtime_ns == mtime
    # The tarball holds the real catatonit binary.
    raw = subprocess.run(["zstd", "-dc", str(first)], capture_output=True, check=True).stdout
    files = _members(raw)
    (entry,) = json.loads(files["index.json"])["manifests"]
    manifest = json.loads(_blob(files, entry["digest"]))
    with tarfile.open(fileobj=io.BytesIO(_blob(files, manifest["layers"][0]["digest"]))) as tar:
        assert tar.extractfile("pause").read() == ka.CATATONIT.read_bytes()


def _fake_go(tmp_path: Path, stdout: str, rc: int = 1) -> str:
    """A `go` that answers like `go mod download -json` does when the proxy refuses (JSON on stdout, exit 1)."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    go = bin_dir / "go"
    go.write_text(f"#!/bin/sh\ncat <<'JSON'\n{stdout}\nJSON\nexit {rc}\n")
    go.chmod(0o755)
    return f"{bin_dir}:{os.environ['PATH']}"


def test_a_refused_module_is_one_clear_error(tmp_path: Path, monkeypatch):
    refusal = json.dumps(
        {
            "Path": ka.K3S_MODULE,
            "Error": "reading .../@v/v1.31.4.info: 403 Forbidden\n\tserver response: not available",
        }
    )
    monkeypatch.setenv("PATH", _fake_go(tmp_path, refusal))
    with pytest.raises(ka.ArtifactsError) as e:
        ka.download_module("v1.31.4+k3s1")
    msg = str(e.value)
    assert "did not serve github.com/k3s-io/k3s@v1.31.4+k3s1" in msg
    assert "403 Forbidden server response: not available" in msg
    assert "GOPROXY" in msg and "RENDERLAB_K3S_MODULE_VERSION" in msg


def test_nothing_is_assembled_when_k3s_is_missing(tmp_path: Path, monkeypatch):
    def refuse(query):
        raise ka.ArtifactsError(f"refused {query}")

    monkeypatch.setattr(ka, "download_module", refuse)
    monkeypatch.setattr(ka, "build_pause_images", lambda parts, log: (_touch(parts / ka.IMAGES_TAR), False))
    cache = tmp_path / "v1.31.4+k3s1"
    with pytest.raises(ka.ArtifactsError, match="refused v1.31.4\\+k3s1"):
        ka.build("v1.31.4+k3s1", cache, log=lambda _m: None)
    assert not cache.exists(), "a half-built artifacts folder would pass the roles' existence checks"


def test_module_query_prefers_the_pseudo_version():
    assert ka.module_query("v1.31.4+k3s1", {}) == "v1.31.4+k3s1"
    assert (
        ka.module_query("v1.31.4+k3s1", {"RENDERLAB_K3S_MODULE_VERSION": "v1.31.4-0.2-abc"})
        == "v1.31.4-0.2-abc"
    )


def _touch(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"x")
    return path
