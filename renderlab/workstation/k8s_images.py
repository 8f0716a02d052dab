"""The image half of `make k8s-artifacts`: the images kubeadm names, built here from the binaries just built.

No registry is reachable, so each image is written as an OCI archive (renderlab.workstation.oci_archive) from
the binaries and, where a tool shells out to iptables/ipset, a layer of Debian packages:

- control plane (kube-apiserver, kube-controller-manager, kube-scheduler), etcd (+ etcdctl), CoreDNS: the static
  binary alone, at the path upstream's image has it (kubeadm's static pods and Deployment call them by name).
- pause: upstream's own pause.c (Kubernetes module, build/pause/linux), compiled static with gcc, as upstream
  builds it; run as 65535 like upstream's image.
- the lab registry (CNCF Distribution, the cluster layer's `registry:<versions.registry>`): its static binary and
  a config file of ours at the path upstream's image reads (filesystem storage under /var/lib/registry, :5000;
  the Deployment's environment adds TLS and htpasswd), so an air-gapped lab has the store it pushes to.
- kube-proxy and kube-router: Debian 12's iptables, ipset and conntrack with their libraries (`apt-get
  download`, unpacked with `dpkg-deb -x`; maintainer scripts are not run, so the iptables alternatives are set
  here: the nf_tables backend, Debian 12's default, the one the nodes' own iptables uses). kube-router's image
  also has busybox (a shell and coreutils) for a DaemonSet's init container that writes the CNI config.
"""

from __future__ import annotations

import hashlib
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from renderlab.workstation.oci_archive import PATH_ENV, Image, Layer, image_archive

REGISTRY = "registry.k8s.io"
# kube-router's own image is not one kubeadm names; this local name never resolves to a registry, so a node
# can only have it from the archive (record: manifest.json "kube_router_image").
KUBE_ROUTER_REPO = "renderlab.local/kube-router"
# The cluster layer names `registry:<version>` (infra/manifests.py); this is how containerd spells that name.
REGISTRY_REPO = "docker.io/library/registry"
REGISTRY_CONFIG = "etc/distribution/config.yml"  # where registry 3's own image keeps it
# Deletes stay off (the default, said here too): a pushed digest never vanishes.
REGISTRY_CONFIG_TEXT = b"""\
version: 0.1
log:
  fields:
    service: registry
storage:
  filesystem:
    rootdirectory: /var/lib/registry
  delete:
    enabled: false
http:
  addr: :5000
  headers:
    X-Content-Type-Options: [nosniff]
"""
# Debian packages of the iptables layer (their dependencies are added from apt's own metadata).
NETFILTER_PACKAGES = ("iptables", "ipset", "conntrack")
SHELL_PACKAGES = ("busybox-static",)
BUSYBOX_APPLETS = (
    "sh",
    "cat",
    "cp",
    "mv",
    "rm",
    "ln",
    "ls",
    "mkdir",
    "chmod",
    "test",
    "[",
    "grep",
    "sed",
    "echo",
)
IPTABLES_TOOLS = (
    "iptables",
    "iptables-save",
    "iptables-restore",
    "ip6tables",
    "ip6tables-save",
    "ip6tables-restore",
)


class ImageBuildError(Exception):
    """One clear message: what failed, where, and how to fix it."""


def kubeadm_refs(k) -> dict[str, str]:
    """archive name -> the reference kubeadm names for a lab config's kubernetes section."""
    v = f"v{k.version}"
    return {
        "kube-apiserver": f"{REGISTRY}/kube-apiserver:{v}",
        "kube-controller-manager": f"{REGISTRY}/kube-controller-manager:{v}",
        "kube-scheduler": f"{REGISTRY}/kube-scheduler:{v}",
        "kube-proxy": f"{REGISTRY}/kube-proxy:{v}",
        "coredns": f"{REGISTRY}/coredns/coredns:v{k.coredns}",
        "pause": f"{REGISTRY}/pause:{k.pause}",
        "etcd": f"{REGISTRY}/etcd:{k.etcd}-0",  # kubeadm's image revision suffix for etcd
    }


def all_refs(k, registry: str) -> dict[str, str]:
    """Every image of the folder: kubeadm's, kube-router's, and the lab registry's (`registry`: its version)."""
    return {
        **kubeadm_refs(k),
        "kube-router": f"{KUBE_ROUTER_REPO}:v{k.kube_router}",
        "registry": f"{REGISTRY_REPO}:{registry}",
    }


# --- Debian packages ---------------------------------------------------------------------------------------


def _apt(*args: str, cwd: Path | None = None) -> str:
    proc = subprocess.run(list(args), cwd=cwd, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise ImageBuildError(
            f"`{' '.join(args)}` failed: {' / '.join(proc.stderr.strip().splitlines()[-3:])}; "
            "this needs Debian's apt (run `apt-get update` once)"
        )
    return proc.stdout


def closure(packages: tuple[str, ...]) -> dict[str, str]:
    """package -> candidate version, for `packages` and everything they depend on (not recommends)."""
    out = _apt(
        "apt-cache", "depends", "--recurse", "--no-recommends", "--no-suggests", "--no-conflicts",
        "--no-breaks", "--no-replaces", "--no-enhances", *packages,
    )  # fmt: skip
    names = sorted({line.strip() for line in out.splitlines() if line and not line.startswith(" ")})
    names = [n for n in names if not n.startswith("<")]  # virtual packages: a real one provides them
    fields = _apt("apt-cache", "show", "--no-all-versions", *names)
    found: dict[str, str] = {}
    name = None
    for line in fields.splitlines():
        if line.startswith("Package: "):
            name = line.split(": ", 1)[1]
        elif line.startswith("Version: ") and name:
            found[name] = line.split(": ", 1)[1]
    return found


def download(packages: dict[str, str], debs: Path, log=print) -> list[Path]:
    """The .deb of each package at its version, downloaded once into `debs` (apt's own client)."""
    debs.mkdir(parents=True, exist_ok=True)

    def have(name: str, version: str) -> list[Path]:
        return sorted(
            debs.glob(f"{name}_{version.replace(':', '%3a')}_*.deb")
        )  # apt's file name for an epoch

    missing = [f"{n}={v}" for n, v in sorted(packages.items()) if not have(n, v)]
    if missing:
        log(f"apt-get download {len(missing)} Debian packages into {debs} ...")
        _apt("apt-get", "download", *missing, cwd=debs)
    files = []
    for name, version in sorted(packages.items()):
        found = have(name, version)
        if not found:
            raise ImageBuildError(f"apt-get download {name}={version} left no .deb in {debs}")
        files.append(found[0])
    return files


def rootfs_layer(debs: list[Path], busybox: bool) -> Layer:
    """The packages unpacked (no docs), with the alternatives their maintainer scripts would have set."""
    with tempfile.TemporaryDirectory(prefix="k8s-rootfs-") as tmp:
        root = Path(tmp)
        for deb in debs:
            _apt("dpkg-deb", "-x", str(deb), str(root))
        for junk in (
            "usr/share/doc",
            "usr/share/man",
            "usr/share/info",
            "usr/share/lintian",
            "usr/share/locale",
        ):
            shutil.rmtree(root / junk, ignore_errors=True)
        layer = Layer().tree(root)
    for tool in IPTABLES_TOOLS:
        layer.symlink(
            f"usr/sbin/{tool}", f"{tool.replace('-save', '').replace('-restore', '')}-nft{_suffix(tool)}"
        )
    if busybox:
        for applet in BUSYBOX_APPLETS:
            layer.symlink(f"bin/{applet}", "busybox")
    layer.dir("tmp", 0o1777).dir("run").dir("var/run").dir("etc")
    layer.file("etc/passwd", b"root:x:0:0:root:/root:/bin/sh\n", 0o644)
    layer.file("etc/group", b"root:x:0:\n", 0o644)
    return layer


def _suffix(tool: str) -> str:
    for s in ("-save", "-restore"):
        if tool.endswith(s):
            return s
    return ""


# --- pause -------------------------------------------------------------------------------------------------


def pause_binary(source: Path, version: str, out: Path, log=print) -> Path:
    """Upstream's pause.c, compiled static (as its Makefile does), once per source and compiler."""
    if not shutil.which("gcc"):
        raise ImageBuildError(
            "gcc is not installed (apt-get install gcc libc6-dev); the pause image compiles pause.c"
        )
    cc = subprocess.run(["gcc", "--version"], capture_output=True, text=True, check=True).stdout.splitlines()[
        0
    ]
    key = hashlib.sha256(source.read_bytes() + cc.encode() + version.encode()).hexdigest()[:16]
    binary, stamp = out / "pause", out / f".built-pause-{key}"
    if binary.is_file() and stamp.exists():
        return binary
    log(f"gcc -static {source} (pause {version}) ...")
    tmp = out / ".pause.tmp"
    proc = subprocess.run(
        ["gcc", "-Os", "-Wall", "-Werror", "-static", f"-DVERSION=v{version}", "-o", str(tmp), str(source)],
        capture_output=True,
        text=True,
        check=False,
    )
    if proc.returncode != 0:
        raise ImageBuildError(
            f"compiling {source} failed: {' / '.join(proc.stderr.strip().splitlines()[-3:])}"
        )
    subprocess.run(["strip", str(tmp)], check=True)
    tmp.rename(binary)
    for old in out.glob(".built-pause-*"):
        old.unlink()
    stamp.touch()
    return binary


# --- the images --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ImageInputs:
    bins: Path  # every built binary (control plane, etcd, coredns, kube-router, pause)
    rootfs: Layer  # Debian's iptables/ipset/conntrack and their libraries
    rootfs_shell: Layer  # the same plus busybox


def _bin(inputs: ImageInputs, name: str) -> bytes:
    return (inputs.bins / name).read_bytes()


def images(k, registry: str, inputs: ImageInputs) -> Iterator[tuple[str, Image]]:
    """(archive name, image) for every reference of all_refs(k, registry), one at a time (each holds its
    binaries)."""
    refs = all_refs(k, registry)
    env = [PATH_ENV]
    for name in ("kube-apiserver", "kube-controller-manager", "kube-scheduler"):
        layer = Layer().file(f"usr/local/bin/{name}", _bin(inputs, name)).dir("tmp", 0o1777)
        yield name, image_archive(refs[name], [layer], {"Entrypoint": [f"/usr/local/bin/{name}"], "Env": env})
    etcd = (
        Layer()
        .file("usr/local/bin/etcd", _bin(inputs, "etcd"))
        .file("usr/local/bin/etcdctl", _bin(inputs, "etcdctl"))
        .dir("var/lib/etcd", 0o700)
        .dir("tmp", 0o1777)
    )
    yield "etcd", image_archive(refs["etcd"], [etcd], {"Entrypoint": ["/usr/local/bin/etcd"], "Env": env})
    coredns = Layer().file("coredns", _bin(inputs, "coredns")).dir("tmp", 0o1777)
    ports = {"53/udp": {}, "53/tcp": {}, "9153/tcp": {}}
    yield (
        "coredns",
        image_archive(
            refs["coredns"], [coredns], {"Entrypoint": ["/coredns"], "Env": env, "ExposedPorts": ports}
        ),
    )
    pause = Layer().file("pause", _bin(inputs, "pause"))
    yield (
        "pause",
        image_archive(refs["pause"], [pause], {"Entrypoint": ["/pause"], "User": "65535:65535", "Env": env}),
    )
    proxy = Layer().file("usr/local/bin/kube-proxy", _bin(inputs, "kube-proxy"))
    yield (
        "kube-proxy",
        image_archive(
            refs["kube-proxy"],
            [inputs.rootfs, proxy],
            {"Entrypoint": ["/usr/local/bin/kube-proxy"], "Env": env},
        ),
    )
    router = Layer().file("usr/local/bin/kube-router", _bin(inputs, "kube-router"))
    yield (
        "kube-router",
        image_archive(
            refs["kube-router"],
            [inputs.rootfs_shell, router],
            {"Entrypoint": ["/usr/local/bin/kube-router"], "Env": env},
        ),
    )
    store = (
        Layer()
        .file("bin/registry", _bin(inputs, "registry"))
        .file(REGISTRY_CONFIG, REGISTRY_CONFIG_TEXT, 0o644)
        .dir("var/lib/registry")
        .dir("tmp", 0o1777)
    )
    yield (
        "registry",
        image_archive(
            refs["registry"],
            [store],
            {
                "Entrypoint": ["/bin/registry"],
                "Cmd": ["serve", f"/{REGISTRY_CONFIG}"],
                "Env": env,
                "ExposedPorts": {"5000/tcp": {}},
                "Volumes": {"/var/lib/registry": {}},
            },
        ),
    )


def debian_layers(debs_dir: Path, log=print) -> tuple[Layer, Layer, dict[str, str]]:
    """(netfilter layer, netfilter + shell layer, package -> version)."""
    base = closure(NETFILTER_PACKAGES)
    shell = closure(SHELL_PACKAGES)
    debs = download(base, debs_dir, log)
    shell_debs = download(shell, debs_dir, log)
    return (
        rootfs_layer(debs, busybox=False),
        rootfs_layer(sorted(set(debs) | set(shell_debs)), busybox=True),
        dict(sorted({**base, **shell}.items())),
    )
