"""The OCI archives `make k8s-artifacts` writes: valid oci-layout tars whose digests hold, byte-for-byte
reproducible, named for both containerd and podman."""

from __future__ import annotations

import hashlib
import io
import json
import tarfile
from pathlib import Path

from renderlab.workstation.oci_archive import Layer, image_archive, read_index

REF = "registry.k8s.io/pause:3.10.1"
BINARY = b"\x7fELF-not-really-pause" * 10


def _members(archive: bytes) -> dict[str, bytes | tarfile.TarInfo]:
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        return {m.name: (tar.extractfile(m).read() if m.isfile() else m) for m in tar.getmembers()}


def _blob(files, digest: str) -> bytes:
    data = files[f"blobs/sha256/{digest.split(':')[1]}"]
    assert "sha256:" + hashlib.sha256(data).hexdigest() == digest, (
        "a blob's content does not match its digest"
    )
    return data


def _image(binary: bytes = BINARY):
    base = Layer().file("usr/sbin/xtables", b"x" * 3, 0o755).symlink("usr/sbin/iptables", "xtables")
    top = Layer().file("pause", binary).dir("tmp", 0o1777)
    return image_archive(REF, [base, top], {"Entrypoint": ["/pause"], "User": "65535:65535"})


def test_archive_is_an_oci_layout_whose_digests_hold():
    image = _image()
    files = _members(image.archive)
    assert json.loads(files["oci-layout"]) == {"imageLayoutVersion": "1.0.0"}
    (entry,) = json.loads(files["index.json"])["manifests"]
    # ctr import reads the first, podman/skopeo the second: both get the full reference kubeadm pulls.
    assert entry["annotations"] == {"io.containerd.image.name": REF, "org.opencontainers.image.ref.name": REF}
    assert entry["digest"] == image.digest
    manifest = json.loads(_blob(files, entry["digest"]))
    assert manifest["config"]["digest"] == image.config
    config = json.loads(_blob(files, image.config))
    assert config["config"]["Entrypoint"] == ["/pause"] and config["config"]["User"] == "65535:65535"
    layers = [_blob(files, d["digest"]) for d in manifest["layers"]]
    assert config["rootfs"]["diff_ids"] == [d["digest"] for d in manifest["layers"]]  # uncompressed layers
    with tarfile.open(fileobj=io.BytesIO(layers[0])) as tar:
        link = tar.getmember("usr/sbin/iptables")
        assert link.issym() and link.linkname == "xtables"
        assert [m.name for m in tar.getmembers()] == [
            "usr",
            "usr/sbin",
            "usr/sbin/iptables",
            "usr/sbin/xtables",
        ]
    with tarfile.open(fileobj=io.BytesIO(layers[1])) as tar:
        pause = tar.getmember("pause")
        assert (pause.mode, pause.uid, pause.mtime) == (0o755, 0, 0)
        assert tar.extractfile(pause).read() == BINARY
        assert tar.getmember("tmp").mode == 0o1777


def test_archive_is_reproducible_and_follows_its_input():
    assert _image().archive == _image().archive
    other = _image(BINARY + b"x")
    assert other.digest != _image().digest and other.archive != _image().archive


def test_a_tree_keeps_modes_and_symlinks(tmp_path: Path):
    (tmp_path / "usr" / "lib").mkdir(parents=True)
    (tmp_path / "usr" / "lib" / "libx.so.1.0").write_bytes(b"lib")
    (tmp_path / "usr" / "lib" / "libx.so.1.0").chmod(0o644)
    (tmp_path / "usr" / "lib" / "libx.so.1").symlink_to("libx.so.1.0")
    layer = Layer().tree(tmp_path)
    assert layer.members["usr/lib/libx.so.1"] == ("symlink", 0o777, "libx.so.1.0")
    assert layer.members["usr/lib/libx.so.1.0"] == ("file", 0o644, b"lib")


def test_read_index_names_the_reference(tmp_path: Path):
    path = tmp_path / "pause.tar"
    path.write_bytes(_image().archive)
    (entry,) = read_index(path)
    assert entry["annotations"]["io.containerd.image.name"] == REF
