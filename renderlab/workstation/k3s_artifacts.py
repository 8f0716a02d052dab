"""`make k3s-artifacts`: the air-gap folder the k3s roles install from (renderlab_k3s_artifacts_dir), built here.

The folder holds the names the roles check: `k3s`, `k3s-airgap-images-amd64.tar.zst` and `sha256sum-amd64.txt`.
It is cached outside git (~/.cache/renderlab/k3s/<version>, or RENDERLAB_K3S_CACHE) and assembled under a temp
name, then renamed, so it is either complete or absent; a second run builds nothing.

Two parts:
- the pause image, built here: Debian's static `catatonit` run as `-P` (its pause mode) in a one-layer OCI image,
  written byte-for-byte reproducibly (fixed times and order) so its digest only changes with catatonit.
- the k3s binary, from the github.com/k3s-io/k3s Go module. Its release tags (v1.31.4+k3s1) carry build metadata,
  which Go module versions cannot, so the module is reached as the tag's commit; the Go module proxy must serve it.
  Where it refuses, this stops with the proxy's own answer (see README, "How each layer is verified").
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
import subprocess
import sys
import tarfile
import time
from dataclasses import dataclass
from pathlib import Path

from renderlab.base import cli
from renderlab.lab.config import ConfigError, load

K3S_MODULE = "github.com/k3s-io/k3s"
IMAGES_TAR = "k3s-airgap-images-amd64.tar.zst"
SUMS = "sha256sum-amd64.txt"
CATATONIT = Path("/usr/bin/catatonit")
PAUSE_REPO = "renderlab.local/pause"

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER = "application/vnd.oci.image.layer.v1.tar"


class ArtifactsError(Exception):
    """One clear message: what failed, where, and how to fix it."""


def default_cache(version: str, env: dict[str, str] | None = None) -> Path:
    env = dict(os.environ if env is None else env)
    base = Path(env.get("RENDERLAB_K3S_CACHE", Path.home() / ".cache" / "renderlab" / "k3s"))
    return base / version


# --- the pause image ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Blob:
    media_type: str
    data: bytes

    @property
    def digest(self) -> str:
        return "sha256:" + hashlib.sha256(self.data).hexdigest()

    def descriptor(self, **extra) -> dict:
        return {"mediaType": self.media_type, "digest": self.digest, "size": len(self.data), **extra}


def _tar_bytes(members: list[tuple[tarfile.TarInfo, bytes | None]]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.USTAR_FORMAT) as tar:
        for info, data in members:
            tar.addfile(info, io.BytesIO(data) if data is not None else None)
    return buf.getvalue()


def _entry(name: str, *, mode: int, data: bytes | None = None) -> tuple[tarfile.TarInfo, bytes | None]:
    info = tarfile.TarInfo(name)
    info.mode, info.mtime, info.uid, info.gid, info.uname, info.gname = mode, 0, 0, 0, "", ""
    if data is None:
        info.type = tarfile.DIRTYPE
    else:
        info.size = len(data)
    return info, data


def pause_image(binary: bytes, ref: str) -> bytes:
    """An OCI image archive (oci-layout tar) holding one image: `binary` as /pause, run as `/pause -P`.

    Named `ref` for both containerd (io.containerd.image.name, what k3s's air-gap import reads) and podman
    (org.opencontainers.image.ref.name). Same input, same bytes."""
    layer = Blob(OCI_LAYER, _tar_bytes([_entry("pause", mode=0o755, data=binary)]))
    config = Blob(
        OCI_CONFIG,
        _json(
            {
                "architecture": "amd64",
                "os": "linux",
                "config": {"Entrypoint": ["/pause", "-P"], "User": "65535:65535"},
                "rootfs": {"type": "layers", "diff_ids": [layer.digest]},
            }
        ),
    )
    manifest = Blob(
        OCI_MANIFEST,
        _json(
            {
                "schemaVersion": 2,
                "mediaType": OCI_MANIFEST,
                "config": config.descriptor(),
                "layers": [layer.descriptor()],
            }
        ),
    )
    tag = ref.rsplit(":", 1)[1]
    index = {
        "schemaVersion": 2,
        "manifests": [
            manifest.descriptor(
                annotations={"io.containerd.image.name": ref, "org.opencontainers.image.ref.name": tag}
            )
        ],
    }
    members = [
        _entry("oci-layout", mode=0o644, data=_json({"imageLayoutVersion": "1.0.0"})),
        _entry("index.json", mode=0o644, data=_json(index)),
        _entry("blobs", mode=0o755),
        _entry("blobs/sha256", mode=0o755),
    ]
    for blob in sorted((layer, config, manifest), key=lambda b: b.digest):
        members.append(_entry(f"blobs/sha256/{blob.digest.split(':')[1]}", mode=0o644, data=blob.data))
    return _tar_bytes(members)


def _json(obj) -> bytes:
    return json.dumps(obj, sort_keys=True, separators=(",", ":")).encode()


def catatonit_version() -> str:
    proc = subprocess.run(
        ["dpkg-query", "-W", "-f=${Version}", "catatonit"], capture_output=True, text=True, check=False
    )
    if proc.returncode != 0 or not CATATONIT.exists():
        raise ArtifactsError(
            f"{CATATONIT} is missing (the pause image is built from Debian's static catatonit); "
            "run `make setup` (requirements/apt-hosts.txt installs it)"
        )
    # A tag may not hold '~' or '+': Debian's 0.1.7-1 becomes 0.1.7-1.
    return proc.stdout.strip().replace("~", "-").replace("+", "-").replace(":", "-")


def zstd(data: bytes) -> bytes:
    if not shutil.which("zstd"):
        raise ArtifactsError(
            "zstd is not installed; run `make setup` (requirements/apt-hosts.txt installs it)"
        )
    return subprocess.run(["zstd", "-q", "-19", "-c"], input=data, capture_output=True, check=True).stdout


# --- the k3s binary ----------------------------------------------------------------------------------------


def module_query(k3s_version: str, env: dict[str, str] | None = None) -> str:
    """The version the Go module proxy is asked for: RENDERLAB_K3S_MODULE_VERSION (the tag's pseudo-version,
    e.g. v1.31.4-0.<date>-<commit>), else the release tag itself (the proxy resolves a tag it knows)."""
    env = dict(os.environ if env is None else env)
    return env.get("RENDERLAB_K3S_MODULE_VERSION") or k3s_version


def download_module(query: str) -> dict:
    """`go mod download -json` of the k3s module; the proxy's refusal becomes one ArtifactsError."""
    if not shutil.which("go"):
        raise ArtifactsError(
            "the Go toolchain is not on PATH; k3s is built from its Go module (install Go 1.22+)"
        )
    proc = subprocess.run(
        ["go", "mod", "download", "-json", f"{K3S_MODULE}@{query}"],
        capture_output=True,
        text=True,
        check=False,
        cwd=Path.home(),  # outside any module: nothing here is edited
        env={**os.environ, "GOFLAGS": "-mod=mod"},
    )
    try:
        info = json.loads(proc.stdout)
    except json.JSONDecodeError:
        info = {"Error": (proc.stderr or proc.stdout).strip() or f"go exited {proc.returncode}"}
    if info.get("Error"):
        raise ArtifactsError(
            f"the Go module proxy did not serve {K3S_MODULE}@{query}: {' '.join(info['Error'].split())}\n"
            f"  go mod download -json {K3S_MODULE}@{query}\n"
            "k3s cannot be built here from its Go module. To fix: point GOPROXY at a proxy that serves it, or set\n"
            "RENDERLAB_K3S_MODULE_VERSION to the release tag's pseudo-version if the proxy serves only that."
        )
    return info


# --- the folder --------------------------------------------------------------------------------------------


def build_pause_images(parts: Path, log=print) -> tuple[Path, bool]:
    """The air-gap images tarball (the pause image), rebuilt only when catatonit changed. Returns (path, built)."""
    parts.mkdir(parents=True, exist_ok=True)
    ref = f"{PAUSE_REPO}:catatonit-{catatonit_version()}"
    images, stamp = parts / IMAGES_TAR, parts / (IMAGES_TAR + ".ref")
    if images.exists() and stamp.exists() and stamp.read_text() == ref:
        return images, False
    log(f"pause image {ref} from {CATATONIT} ...")
    tmp = images.with_name(images.name + ".tmp")
    tmp.write_bytes(zstd(pause_image(CATATONIT.read_bytes(), ref)))
    tmp.rename(images)
    stamp.write_text(ref)
    return images, True


def build(k3s_version: str, cache: Path, log=print) -> dict:
    """Build (or find) every part; the folder is assembled only once all of them exist. Returns the result line."""
    t0 = time.monotonic()
    if (cache / SUMS).exists():
        log(f"{cache}: complete, nothing to build")
        return {"artifacts": str(cache), "built": [], "seconds": round(time.monotonic() - t0, 2)}
    parts = cache.with_name(cache.name + ".parts")
    images, built = build_pause_images(parts, log)
    log(f"{images}: {images.stat().st_size} bytes{' (built)' if built else ' (cached)'}")

    log(f"k3s {k3s_version}: asking the Go module proxy for {K3S_MODULE} ...")
    download_module(module_query(k3s_version))
    # Reached only where the proxy serves the module; never reached on this project's machines (see README).
    raise ArtifactsError(
        f"{K3S_MODULE} was served, but building it is not written: it was never reachable here to test"
    )


def main(argv: list[str] | None = None) -> int:
    parser = cli.Parser(
        prog="python -m renderlab.workstation.k3s_artifacts", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument(
        "--config", default="Pulumi.example.yaml", help="the stack file whose versions.k3s is built"
    )
    parser.add_argument(
        "--cache", type=Path, help="the artifacts folder (default ~/.cache/renderlab/k3s/<version>)"
    )
    args = parser.parse_args(argv)
    try:
        version = load(args.config).versions.k3s
        result = build(version, args.cache or default_cache(version))
    except (ConfigError, ArtifactsError) as e:
        print(f"k3s-artifacts: error: {cli.one_line(e)}", file=sys.stderr)
        return 1
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(cli.guard("k3s-artifacts", main))
