"""The Go half of `make k8s-artifacts`: every binary, from its upstream Go module, at the lab config's versions.

Each upstream project is built through a wrapper module of ours under tools/kubernetes/<name>/ (go.mod +
go.sum committed; `tool` lines name the binaries), one per project because their dependency graphs cannot
share one go.mod (kube-router 2.1.0 pins client-go 0.29, Kubernetes 1.35 needs 0.35). The Go module and build
caches are the ones `make tools` uses (scripts/build-tools.sh), so shared dependencies compile once.

Version ldflags are the ones each project's own release build sets: unversioned Kubernetes binaries say
`v0.0.0-master`, which kubeadm's version checks refuse. Commit and build date come from the Go module proxy's
record of the tag (`go mod download -json`: Origin.Hash, Time), so two builds of one version are identical.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import resource
import shutil
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
WRAPPERS = REPO / "tools" / "kubernetes"
# Bumped when the build recipe here changes in a way go.mod/go.sum do not show.
RECIPE = "1"


class GoBuildError(Exception):
    """One clear message: what failed, where, and how to fix it."""


def tools_cache(env: dict[str, str] | None = None) -> Path:
    """scripts/build-tools.sh's cache; its go/mod and go/build are shared with `make tools`."""
    env = dict(os.environ if env is None else env)
    if env.get("RENDERLAB_TOOLS_CACHE"):
        return Path(env["RENDERLAB_TOOLS_CACHE"])
    return Path(env.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "renderlab" / "tools"


def go_env(env: dict[str, str] | None = None) -> dict[str, str]:
    cache = tools_cache(env)
    return {
        **(os.environ if env is None else env),
        "GOMODCACHE": str(cache / "go" / "mod"),
        "GOCACHE": str(cache / "go" / "build"),
        "GOFLAGS": "-mod=readonly",
        "GOTOOLCHAIN": "local",
    }


@dataclass(frozen=True)
class GoModule:
    """One wrapper module: the upstream module it builds, at which version, which binaries, how."""

    name: str  # tools/kubernetes/<name>
    module: str  # the upstream module whose version the lab config pins
    version: str  # v-prefixed, as go.mod writes it
    binaries: dict[str, str]  # output file -> package
    ldflags: Callable[[str, str], list[str]] = field(compare=False)  # (commit, date) -> -X settings
    tags: tuple[str, ...] = ()
    cgo: bool = False
    static_cgo: bool = False  # cgo, linked statically (runc: libseccomp.a and glibc)

    @property
    def dir(self) -> Path:
        return WRAPPERS / self.name


def _x(pkg: str, **values: str) -> list[str]:
    return [f"-X {pkg}.{k}={v}" for k, v in values.items()]


def modules(k, registry: str) -> list[GoModule]:
    """The wrappers for a lab config's `kubernetes` section (renderlab.lab.config.Kubernetes) and its lab
    registry's version (versions.registry)."""
    major, minor, _ = k.version.split(".")
    kube = f"v{k.version}"

    def kube_ldflags(commit: str, date: str) -> list[str]:
        values = dict(
            gitVersion=kube,
            gitMajor=major,
            gitMinor=minor,
            gitCommit=commit,
            gitTreeState="clean",
            buildDate=date,
        )
        return _x("k8s.io/component-base/version", **values) + _x("k8s.io/client-go/pkg/version", **values)

    cni = "github.com/containernetworking/plugins/plugins"
    return [
        GoModule(
            "kubernetes",
            "k8s.io/kubernetes",
            kube,
            {
                name: f"k8s.io/kubernetes/cmd/{name}"
                for name in (
                    "kubeadm",
                    "kubelet",
                    "kubectl",
                    "kube-apiserver",
                    "kube-controller-manager",
                    "kube-scheduler",
                    "kube-proxy",
                )
            },
            kube_ldflags,
            tags=("selinux", "notest"),  # hack/lib/golang.sh's
        ),
        GoModule(
            "etcd",
            "go.etcd.io/etcd/server/v3",
            f"v{k.etcd}",
            {"etcd": "go.etcd.io/etcd/server/v3", "etcdctl": "go.etcd.io/etcd/etcdctl/v3"},
            lambda commit, _d: _x("go.etcd.io/etcd/api/v3/version", GitSHA=commit[:7]),
        ),
        GoModule(
            "containerd",
            "github.com/containerd/containerd/v2",
            f"v{k.containerd}",
            {
                "containerd": "github.com/containerd/containerd/v2/cmd/containerd",
                "containerd-shim-runc-v2": "github.com/containerd/containerd/v2/cmd/containerd-shim-runc-v2",
                "ctr": "github.com/containerd/containerd/v2/cmd/ctr",
            },
            lambda commit, _d: _x(
                "github.com/containerd/containerd/v2/version",
                Version=f"v{k.containerd}",
                Revision=commit,
                Package="github.com/containerd/containerd/v2",
            ),
            # its Makefile's (urfave_cli_no_docs), and no btrfs snapshotter (it needs cgo + libbtrfs)
            tags=("urfave_cli_no_docs", "no_btrfs"),
        ),
        GoModule(
            "runc",
            "github.com/opencontainers/runc",
            f"v{k.runc}",
            {"runc": "github.com/opencontainers/runc"},
            lambda commit, _d: _x("main", gitCommit=commit),  # the version itself is embedded (VERSION)
            tags=("seccomp", "urfave_cli_no_docs", "netgo", "osusergo"),  # its `make static`
            cgo=True,
            static_cgo=True,
        ),
        GoModule(
            "cni-plugins",
            "github.com/containernetworking/plugins",
            f"v{k.cni_plugins}",
            {
                "bridge": f"{cni}/main/bridge",
                "host-local": f"{cni}/ipam/host-local",
                "loopback": f"{cni}/main/loopback",
                "portmap": f"{cni}/meta/portmap",
                "bandwidth": f"{cni}/meta/bandwidth",
            },
            lambda _c, _d: _x(
                "github.com/containernetworking/plugins/pkg/utils/buildversion",
                BuildVersion=f"v{k.cni_plugins}",
            ),
        ),
        GoModule(
            "cri-tools",
            "sigs.k8s.io/cri-tools",
            f"v{k.cri_tools}",
            {"crictl": "sigs.k8s.io/cri-tools/cmd/crictl"},
            lambda _c, _d: _x("sigs.k8s.io/cri-tools/pkg/version", Version=f"v{k.cri_tools}"),
        ),
        GoModule(
            "coredns",
            "github.com/coredns/coredns",
            f"v{k.coredns}",
            {"coredns": "github.com/coredns/coredns"},
            lambda commit, _d: _x("github.com/coredns/coredns/coremain", GitCommit=commit[:7]),
        ),
        GoModule(
            "kube-router",
            "github.com/cloudnativelabs/kube-router/v2",
            f"v{k.kube_router}",
            {"kube-router": "github.com/cloudnativelabs/kube-router/v2/cmd/kube-router"},
            lambda _c, date: _x(
                "github.com/cloudnativelabs/kube-router/v2/pkg/version",
                Version=f"v{k.kube_router}",
                BuildDate=date,
            ),
        ),
        GoModule(
            "registry",
            "github.com/distribution/distribution/v3",
            f"v{registry}",
            {"registry": "github.com/distribution/distribution/v3/cmd/registry"},
            # its release Dockerfile's: the version without its v
            lambda commit, _d: _x(
                "github.com/distribution/distribution/v3/version",
                version=registry,
                revision=commit,
                mainpkg="github.com/distribution/distribution/v3",
            ),
        ),
    ]


def required_version(gomod: str, module: str) -> str | None:
    """The version `go.mod` text requires of `module` (a require line, in a block or not)."""
    m = re.search(rf"^\s*(?:require\s+)?{re.escape(module)}\s+(v\S+)", gomod, re.MULTILINE)
    return m.group(1) if m else None


def check_pins(mods: list[GoModule]) -> None:
    for mod in mods:
        gomod = mod.dir / "go.mod"
        if not gomod.exists() or not (mod.dir / "go.sum").exists():
            raise GoBuildError(
                f"{mod.dir.relative_to(REPO)}: no go.mod/go.sum; the wrapper module is missing"
            )
        have = required_version(gomod.read_text(), mod.module)
        if have != mod.version:
            raise GoBuildError(
                f"the lab config pins {mod.module} {mod.version} but {gomod.relative_to(REPO)} requires "
                f"{have or 'no version of it'}; align them: cd {mod.dir.relative_to(REPO)} && "
                f"go get {mod.module}@{mod.version} && go mod tidy (and commit go.mod, go.sum)"
            )


def origin(mod: GoModule, env: dict[str, str]) -> tuple[str, str]:
    """(commit, date) of the module version's tag, from the module proxy's record (cached after once)."""
    proc = subprocess.run(
        ["go", "mod", "download", "-json", f"{mod.module}@{mod.version}"],
        cwd=mod.dir,
        capture_output=True,
        text=True,
        env=env,
        check=False,
    )
    try:
        info = json.loads(proc.stdout)
    except json.JSONDecodeError:
        info = {"Error": (proc.stderr or proc.stdout).strip() or f"go exited {proc.returncode}"}
    if info.get("Error"):
        raise GoBuildError(
            f"the Go module proxy did not serve {mod.module}@{mod.version}: {' '.join(info['Error'].split())}"
        )
    commit = (info.get("Origin") or {}).get("Hash") or "unknown"
    info_file = Path(info["Info"])
    date = json.loads(info_file.read_text()).get("Time", "1970-01-01T00:00:00Z")
    return commit, date


def go_version(env: dict[str, str]) -> str:
    if not shutil.which("go"):
        raise GoBuildError(
            "Go is not installed (apt-get install golang, Go >= 1.26); the binaries are built with it"
        )
    return subprocess.run(
        ["go", "env", "GOVERSION"], capture_output=True, text=True, env=env, check=True
    ).stdout.strip()


def build_args(mod: GoModule, commit: str, date: str) -> list[str]:
    ldflags = ["-s", "-w", *mod.ldflags(commit, date)]
    if mod.static_cgo:
        ldflags += ["-extldflags", "-static"]
    args = ["-trimpath", "-ldflags", " ".join(ldflags)]
    if mod.tags:
        args += ["-tags", ",".join(mod.tags)]
    return args


def stamp_key(mod: GoModule, args: list[str], gover: str) -> str:
    h = hashlib.sha256()
    for part in (RECIPE, gover, json.dumps(args), json.dumps(mod.binaries, sort_keys=True), str(mod.cgo)):
        h.update(part.encode() + b"\0")
    h.update((mod.dir / "go.mod").read_bytes() + b"\0" + (mod.dir / "go.sum").read_bytes())
    return h.hexdigest()[:16]


@dataclass
class Usage:
    """Wall and CPU seconds and the largest process's peak RSS of the Go builds this run started."""

    wall: float = 0.0
    cpu: float = 0.0
    peak_rss_kib: int = 0
    built: list[str] = field(default_factory=list)


def _children_cpu() -> float:
    ru = resource.getrusage(resource.RUSAGE_CHILDREN)
    return ru.ru_utime + ru.ru_stime


def build(mods: list[GoModule], out: Path, log=print, env: dict[str, str] | None = None) -> Usage:
    """Every binary of `mods` into `out` (renamed into place), skipping a module whose stamp matches."""
    env = go_env(env)
    check_pins(mods)
    gover = go_version(env)
    out.mkdir(parents=True, exist_ok=True)
    usage = Usage()
    for mod in mods:
        commit, date = origin(mod, env)
        args = build_args(mod, commit, date)
        stamp = out / f".built-{mod.name}-{stamp_key(mod, args, gover)}"
        if stamp.exists() and all((out / b).is_file() for b in mod.binaries):
            continue
        cenv = {**env, "CGO_ENABLED": "1" if mod.cgo else "0"}
        for binary, package in mod.binaries.items():
            log(f"go build {package} ({mod.module} {mod.version}) ...")
            t0, c0 = time.monotonic(), _children_cpu()
            tmp = out / f".{binary}.tmp"
            proc = subprocess.run(
                ["nice", "-n", "5", "go", "build", *args, "-o", str(tmp), package],
                cwd=mod.dir,
                env=cenv,
                capture_output=True,
                text=True,
                check=False,
            )
            if proc.returncode != 0:
                tmp.unlink(missing_ok=True)
                tail = " / ".join(proc.stderr.strip().splitlines()[-6:])
                raise GoBuildError(f"go build {package} in {mod.dir.relative_to(REPO)} failed: {tail}")
            tmp.rename(out / binary)
            wall, cpu = time.monotonic() - t0, _children_cpu() - c0
            usage.wall += wall
            usage.cpu += cpu
            usage.peak_rss_kib = max(
                usage.peak_rss_kib, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
            )
            usage.built.append(binary)
            log(f"  {binary}: {wall:.0f} s wall, {cpu:.0f} s CPU")
        for old in out.glob(f".built-{mod.name}-*"):
            old.unlink()
        stamp.touch()
    return usage
