"""Reproducible OCI image archives, written here without a registry or a container engine.

An archive is an oci-layout tar holding one image, named for containerd (`io.containerd.image.name`, what
`ctr images import` reads) and for podman/skopeo (`org.opencontainers.image.ref.name`, the full reference).
Every tar member has fixed times, owners and order, so the same files give the same bytes and digests: an
image's digest changes only when what is in it changes.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import stat
import tarfile
from dataclasses import dataclass, field
from pathlib import Path

OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER = "application/vnd.oci.image.layer.v1.tar"
PATH_ENV = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


@dataclass(frozen=True)
class Blob:
    media_type: str
    data: bytes

    @property
    def digest(self) -> str:
        return "sha256:" + hashlib.sha256(self.data).hexdigest()

    def descriptor(self, **extra) -> dict:
        return {"mediaType": self.media_type, "digest": self.digest, "size": len(self.data), **extra}


@dataclass
class Layer:
    """A layer's members by path (no leading '/'): a directory, a file's bytes, or a symlink's target."""

    members: dict[str, tuple[str, int, bytes | str | None]] = field(default_factory=dict)

    def _parents(self, path: str) -> str:
        path = path.strip("/")
        parts = path.split("/")
        for i in range(1, len(parts)):
            self.members.setdefault("/".join(parts[:i]), ("dir", 0o755, None))
        return path

    def dir(self, path: str, mode: int = 0o755) -> Layer:
        self.members[self._parents(path)] = ("dir", mode, None)
        return self

    def file(self, path: str, data: bytes, mode: int = 0o755) -> Layer:
        self.members[self._parents(path)] = ("file", mode, data)
        return self

    def symlink(self, path: str, target: str) -> Layer:
        self.members[self._parents(path)] = ("symlink", 0o777, target)
        return self

    def tree(self, root: Path) -> Layer:
        """Every directory, regular file and symlink under `root` (its modes kept, owners made root)."""
        for dirpath, dirnames, filenames in os.walk(root):
            dirnames.sort()
            for name in [*dirnames, *sorted(filenames)]:
                p = Path(dirpath) / name
                rel = p.relative_to(root).as_posix()
                st = p.lstat()
                if stat.S_ISLNK(st.st_mode):
                    self.members[rel] = ("symlink", 0o777, os.readlink(p))
                elif stat.S_ISDIR(st.st_mode):
                    self.members[rel] = ("dir", stat.S_IMODE(st.st_mode), None)
                elif stat.S_ISREG(st.st_mode):
                    self.members[rel] = ("file", stat.S_IMODE(st.st_mode), p.read_bytes())
        return self

    def tar(self) -> bytes:
        entries = []
        for path in sorted(self.members):
            kind, mode, data = self.members[path]
            info = tarfile.TarInfo(path)
            info.mode, info.mtime, info.uid, info.gid, info.uname, info.gname = mode, 0, 0, 0, "", ""
            if kind == "dir":
                info.type = tarfile.DIRTYPE
                entries.append((info, None))
            elif kind == "symlink":
                info.type, info.linkname = tarfile.SYMTYPE, str(data)
                entries.append((info, None))
            else:
                assert isinstance(data, bytes)
                info.size = len(data)
                entries.append((info, data))
        return tar_bytes(entries)


def tar_bytes(members: list[tuple[tarfile.TarInfo, bytes | None]]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for info, data in members:
            tar.addfile(info, io.BytesIO(data) if data is not None else None)
    return buf.getvalue()


def _json(obj) -> bytes:
    return json.dumps(obj, sort_keys=True, separators=(",", ":")).encode()


def _entry(name: str, data: bytes | None, mode: int) -> tuple[tarfile.TarInfo, bytes | None]:
    info = tarfile.TarInfo(name)
    info.mode, info.mtime, info.uid, info.gid, info.uname, info.gname = mode, 0, 0, 0, "", ""
    if data is None:
        info.type = tarfile.DIRTYPE
    else:
        info.size = len(data)
    return info, data


@dataclass(frozen=True)
class Image:
    """What an archive holds, as its digests: `digest` is the manifest's (what `crictl images --digests`
    and a pull by digest name), `config` the image id."""

    ref: str
    digest: str
    config: str
    archive: bytes


def image_archive(ref: str, layers: list[Layer], config: dict) -> Image:
    """One image in an oci-layout tar. `config` is the runtime config (Entrypoint, Env, User, ...)."""
    blobs = [Blob(OCI_LAYER, layer.tar()) for layer in layers]
    cfg = Blob(
        OCI_CONFIG,
        _json(
            {
                "architecture": "amd64",
                "os": "linux",
                "config": config,
                "rootfs": {"type": "layers", "diff_ids": [b.digest for b in blobs]},
            }
        ),
    )
    manifest = Blob(
        OCI_MANIFEST,
        _json(
            {
                "schemaVersion": 2,
                "mediaType": OCI_MANIFEST,
                "config": cfg.descriptor(),
                "layers": [b.descriptor() for b in blobs],
            }
        ),
    )
    index = {
        "schemaVersion": 2,
        "mediaType": OCI_INDEX,
        "manifests": [
            manifest.descriptor(
                annotations={"io.containerd.image.name": ref, "org.opencontainers.image.ref.name": ref}
            )
        ],
    }
    members = [
        _entry("oci-layout", _json({"imageLayoutVersion": "1.0.0"}), 0o644),
        _entry("index.json", _json(index), 0o644),
        _entry("blobs", None, 0o755),
        _entry("blobs/sha256", None, 0o755),
    ]
    unique = {b.digest: b for b in (*blobs, cfg, manifest)}
    for digest in sorted(unique):
        members.append(_entry(f"blobs/sha256/{digest.split(':')[1]}", unique[digest].data, 0o644))
    return Image(ref=ref, digest=manifest.digest, config=cfg.digest, archive=tar_bytes(members))


def read_index(archive: Path) -> list[dict]:
    """The manifests an archive's index.json names (for checks: name, digest)."""
    with tarfile.open(archive) as tar:
        member = tar.extractfile("index.json")
        if member is None:
            raise ValueError(f"{archive}: no index.json; not an OCI image archive")
        return json.load(member)["manifests"]
