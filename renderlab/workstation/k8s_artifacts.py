"""`make k8s-artifacts`: upstream Kubernetes for kubeadm, built here from its Go modules, as an air-gap folder.

The folder (the contract the roles and the cluster tests code against; keep it):

    ${RENDERLAB_K8S_CACHE:-~/.cache/renderlab/k8s}/v<kubernetes.version>/
      bin/        kubeadm kubelet kubectl containerd containerd-shim-runc-v2 ctr runc crictl
      cni/bin/    bridge host-local loopback portmap bandwidth
      images/     <name>.tar: one OCI archive per image, `ctr -n k8s.io images import`-able (and `podman load`),
                  named exactly as `kubeadm config images list --kubernetes-version v<version>` names them:
                  kube-apiserver, kube-controller-manager, kube-scheduler, kube-proxy -> registry.k8s.io/<name>:v<version>
                  etcd -> registry.k8s.io/etcd:<etcd>-0, coredns -> registry.k8s.io/coredns/coredns:v<coredns>,
                  pause -> registry.k8s.io/pause:<pause> (also containerd's sandbox image: manifest "sandbox_image"),
                  kube-router -> renderlab.local/kube-router:v<kube_router> (manifest "kube_router_image"),
                  registry -> docker.io/library/registry:<versions.registry> (manifest "registry_image"): the
                  lab registry the cluster layer runs, which an air-gapped node cannot pull either
      manifest.json   every file (sha256, size, the version it reports), every image (ref, manifest digest,
                  config digest), the pinned versions, the Debian packages in the iptables layer
      .ready      touched last: the folder is complete (poll for it)

Every file is written under a temp name and renamed; .ready is removed before a rebuild starts and touched after
manifest.json, so a reader that sees .ready sees a complete folder. Build inputs and the Go binaries live beside
it in v<version>.parts/. A second run with nothing changed builds nothing and rewrites nothing.

Before the folder is written the built kubeadm is asked which images it will pull (`kubeadm config images
list`), and every binary is run for the version it reports: a mismatch with the lab config stops the build.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

from renderlab.base import atomic, cli
from renderlab.lab.config import ConfigError, load
from renderlab.workstation import k8s_go, k8s_images
from renderlab.workstation.k8s_go import GoBuildError
from renderlab.workstation.k8s_images import ImageBuildError, ImageInputs

NODE_BINARIES = (
    "kubeadm",
    "kubelet",
    "kubectl",
    "containerd",
    "containerd-shim-runc-v2",
    "ctr",
    "runc",
    "crictl",
)
CNI_PLUGINS = ("bridge", "host-local", "loopback", "portmap", "bandwidth")
READY = ".ready"
MANIFEST = "manifest.json"
# Bumped when the folder's layout or the images' recipe changes.
LAYOUT = "1"


class ArtifactsError(Exception):
    """One clear message: what failed, where, and how to fix it."""


def cache_root(env: dict[str, str] | None = None) -> Path:
    env = dict(os.environ if env is None else env)
    if env.get("RENDERLAB_K8S_CACHE"):
        return Path(env["RENDERLAB_K8S_CACHE"])
    return Path(env.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "renderlab" / "k8s"


def default_cache(version: str, env: dict[str, str] | None = None) -> Path:
    return cache_root(env) / f"v{version}"


def expected_versions(k, registry: str) -> dict[str, tuple[list[str], str]]:
    """binary -> (arguments that make it print its version, what that output must contain). `registry`: the
    lab registry's version (versions.registry)."""
    kube = f"v{k.version}"
    kubernetes = {
        "kubeadm": (["version", "-o", "short"], kube),
        "kubelet": (["--version"], f"Kubernetes {kube}"),
        "kubectl": (["version", "--client"], f"Client Version: {kube}"),
        **{
            name: (["--version"], f"Kubernetes {kube}")
            for name in ("kube-apiserver", "kube-controller-manager", "kube-scheduler", "kube-proxy")
        },
    }
    return {
        **kubernetes,
        "etcd": (["--version"], f"etcd Version: {k.etcd}"),
        "etcdctl": (["version"], f"etcdctl version: {k.etcd}"),
        "containerd": (["--version"], f" v{k.containerd} "),
        "containerd-shim-runc-v2": (["-v"], f"v{k.containerd}"),
        "ctr": (["--version"], f" v{k.containerd}"),
        "runc": (["--version"], f"runc version {k.runc}"),
        "crictl": (["--version"], f"crictl version v{k.cri_tools}"),
        "coredns": (["-version"], f"CoreDNS-{k.coredns}"),
        "kube-router": (["--version"], f"version v{k.kube_router},"),
        "pause": (["-v"], f"v{k.pause}"),
        "registry": (["--version"], f"github.com/distribution/distribution/v3 {registry}"),
        **{name: ([], f"CNI {name} plugin v{k.cni_plugins}") for name in CNI_PLUGINS},
    }


def reported_version(binary: Path, args: list[str], want: str) -> str:
    """The line of `binary args...` that holds `want`; ArtifactsError when none does."""
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin")}  # no CNI_COMMAND: a plugin prints its version
    proc = subprocess.run(
        [str(binary), *args], capture_output=True, text=True, env=env, timeout=60, check=False
    )
    text = proc.stdout + proc.stderr
    for line in text.splitlines():
        if want in line:
            return line.strip()
    first = text.strip().splitlines()[0] if text.strip() else f"nothing (exit {proc.returncode})"
    raise ArtifactsError(
        f"{binary.name} {' '.join(args)} reports {first!r}, expected {want.strip()!r}: it was not built at the "
        "lab config's version (check its wrapper module under tools/kubernetes/ and the version ldflags)"
    )


def kubeadm_images(kubeadm: Path, version: str) -> list[str]:
    proc = subprocess.run(
        [str(kubeadm), "config", "images", "list", "--kubernetes-version", f"v{version}"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    if proc.returncode != 0:
        raise ArtifactsError(f"kubeadm config images list failed: {cli.one_line(proc.stderr)[-400:]}")
    return sorted(line.strip() for line in proc.stdout.splitlines() if line.strip())


def check_kubeadm_names(kubeadm: Path, k) -> list[str]:
    """The images kubeadm will pull must be exactly the ones built here (else an air-gapped init stalls)."""
    names = kubeadm_images(kubeadm, k.version)
    ours = sorted(k8s_images.kubeadm_refs(k).values())
    if names != ours:
        raise ArtifactsError(
            f"kubeadm v{k.version} pulls {', '.join(sorted(set(names) - set(ours)))} but the lab config pins "
            f"{', '.join(sorted(set(ours) - set(names)))}; set kubernetes.etcd/coredns/pause in the stack file "
            "to the tags kubeadm names"
        )
    return names


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _copy(src: Path, dest: Path) -> None:
    with atomic.target(dest, mode=0o755) as tmp:
        shutil.copyfile(src, tmp)


def du(path: Path) -> int:
    total = 0
    for dirpath, _dirs, files in os.walk(path):
        for name in files:
            with contextlib.suppress(OSError):  # a file removed meanwhile
                total += os.lstat(os.path.join(dirpath, name)).st_size
    return total


def _gib(n: int) -> str:
    return f"{n / (1 << 30):.2f} GiB"


def build(k, registry: str, cache: Path, log=print, env: dict[str, str] | None = None) -> dict:
    """Build (or find) everything for a kubernetes section and a lab registry version, then write the folder if
    anything in it would change. The result line."""
    t0 = time.monotonic()
    parts = cache.with_name(cache.name + ".parts")
    bins = parts / "bin"
    mods = k8s_go.modules(k, registry)
    usage = k8s_go.build(mods, bins, log, env)

    kube_module = k8s_go.go_env(env)["GOMODCACHE"] + f"/k8s.io/kubernetes@v{k.version}"
    pause_c = Path(kube_module) / "build" / "pause" / "linux" / "pause.c"
    if not pause_c.exists():
        raise ArtifactsError(f"{pause_c} is missing: the k8s.io/kubernetes module was not downloaded whole")
    k8s_images.pause_binary(pause_c, k.pause, bins, log)
    rootfs, rootfs_shell, debs = k8s_images.debian_layers(parts / "debs", log)

    versions = expected_versions(k, registry)
    inputs = hashlib.sha256()
    for name in sorted(versions):
        inputs.update(f"{name}:{sha256(bins / name)}\n".encode())
    inputs.update(json.dumps([LAYOUT, debs, k8s_images.all_refs(k, registry)], sort_keys=True).encode())
    key = inputs.hexdigest()

    manifest_path = cache / MANIFEST
    if (cache / READY).exists() and manifest_path.exists():
        try:
            done = json.loads(manifest_path.read_text()).get("inputs") == key
        except json.JSONDecodeError:
            done = False
        if done:
            log(f"{cache}: complete, nothing to build")
            return result(cache, usage, t0, env, assembled=False)

    (cache / READY).unlink(missing_ok=True)
    reports = {name: reported_version(bins / name, *versions[name]) for name in sorted(versions)}
    names = check_kubeadm_names(bins / "kubeadm", k)
    log(f"kubeadm v{k.version} names {len(names)} images; every binary reports the pinned version")

    files: dict[str, dict] = {}
    for sub, wanted in (("bin", NODE_BINARIES), ("cni/bin", CNI_PLUGINS)):
        for name in wanted:
            _copy(bins / name, cache / sub / name)
            files[f"{sub}/{name}"] = {"sha256": sha256(bins / name), "reports": reports[name]}
    images: dict[str, dict] = {}
    inputs_ = ImageInputs(bins=bins, rootfs=rootfs, rootfs_shell=rootfs_shell)
    for name, image in k8s_images.images(k, registry, inputs_):
        rel = f"images/{name}.tar"
        atomic.write_bytes(cache / rel, image.archive, mode=0o644)
        # Each image is named after the binary it runs, whose version it reports.
        files[rel] = {
            "sha256": hashlib.sha256(image.archive).hexdigest(),
            "image": image.ref,
            "reports": reports[name],
        }
        images[image.ref] = {"archive": rel, "digest": image.digest, "config": image.config}
        log(f"{rel}: {image.ref} {image.digest[:19]} ({len(image.archive) >> 20} MiB)")
    for rel, info in files.items():
        info["size"] = (cache / rel).stat().st_size
    refs = k8s_images.all_refs(k, registry)
    manifest = {
        "kubernetes_version": f"v{k.version}",
        "versions": {
            **{name: str(getattr(k, name)) for name in type(k).model_fields if not name.endswith("_cidr")},
            "registry": registry,
        },
        "kubeadm_images": names,
        "sandbox_image": refs["pause"],
        "kube_router_image": refs["kube-router"],
        "registry_image": refs["registry"],
        "files": files,
        "images": images,
        "debian_packages": debs,
        "inputs": key,
    }
    atomic.write_json(manifest_path, manifest, mode=0o644)
    (cache / READY).touch()
    return result(cache, usage, t0, env, assembled=True)


def result(cache: Path, usage: k8s_go.Usage, t0: float, env, assembled: bool) -> dict:
    tools = k8s_go.tools_cache(env) / "go"
    return {
        "artifacts": str(cache),
        "built": usage.built,
        "assembled": assembled,
        "seconds": round(time.monotonic() - t0, 1),
        "go_build_seconds": round(usage.wall, 1),
        "go_cpu_seconds": round(usage.cpu, 1),
        "go_peak_rss_mib": usage.peak_rss_kib >> 10,
        "go_cache": _gib(du(tools)),
        "artifacts_size": _gib(du(cache)),
        "parts_size": _gib(du(cache.with_name(cache.name + ".parts"))),
    }


@cli.command("k8s-artifacts")
def main(argv: list[str] | None = None) -> int:
    parser = cli.Parser(
        prog="python -m renderlab.workstation.k8s_artifacts", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument(
        "--config",
        default="Pulumi.example.yaml",
        help="the stack file whose kubernetes section (and versions.registry) is built",
    )
    parser.add_argument(
        "--cache", type=Path, help="the artifacts folder (default ~/.cache/renderlab/k8s/v<version>)"
    )
    args = parser.parse_args(argv)
    try:
        config = load(args.config)
        k = config.kubernetes
        out = build(k, config.versions.registry, args.cache or default_cache(k.version))
    except (ConfigError, ArtifactsError, GoBuildError, ImageBuildError) as e:
        print(f"k8s-artifacts: error: {cli.one_line(e)}", file=sys.stderr)
        return 1
    print(
        f"k8s-artifacts: {len(out['built'])} binaries built in {out['go_build_seconds']} s "
        f"(CPU {out['go_cpu_seconds']} s, largest process {out['go_peak_rss_mib']} MiB); whole run {out['seconds']} s; "
        f"Go caches {out['go_cache']}, artifacts {out['artifacts_size']} (+ {out['parts_size']} build parts)"
    )
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
