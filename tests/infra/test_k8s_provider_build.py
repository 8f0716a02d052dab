"""make k8s-provider (scripts/build-k8s-provider.sh): the Pulumi Kubernetes provider from its Go module through
the wrapper tools/pulumi-kubernetes/, beside the engine `make tools` builds.

The first tests need no build: the wrapper's pin, the embedded files the script generates, where the binary
goes, and the script's refusals. The last ones need the built provider; without it they skip and name the build.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import time
from pathlib import Path

import pulumi_kubernetes as k8s
import pytest
from google.protobuf import empty_pb2
from pulumi.runtime import proto

from infra import cluster, manifests
from renderlab.lab.config import load
from tests import provider_build
from tests.infra import plugin_server

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "scripts" / "build-k8s-provider.sh"
WRAPPER = ROOT / "tools" / "pulumi-kubernetes"
CMD = WRAPPER / "cmd" / "pulumi-resource-kubernetes"
PROVIDER = "github.com/pulumi/pulumi-kubernetes/provider/v4"
GO_MOD = (WRAPPER / "go.mod").read_text()


def required(gomod: str) -> list[tuple[str, bool]]:
    """Every (version, direct) the go.mod requires the provider at, in a require block or on its own."""
    pattern = rf"^(?:require )?\s*{re.escape(PROVIDER)} (v\S+)( // indirect)?\s*$"
    return [(m[1], not m[2]) for m in re.finditer(pattern, gomod, re.M)]


(PINNED,) = [v for v, direct in required(GO_MOD) if direct]
VERSION = PINNED.removeprefix("v")


def run(*args: str, env: dict[str, str] | None = None, script: Path = SCRIPT) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(script), *args], capture_output=True, text=True, env=env, timeout=120, check=False
    )


# --- without a build ---------------------------------------------------------------------------------------


def test_the_wrapper_requires_the_provider_directly_at_one_version_whose_hashes_it_holds():
    assert required(GO_MOD) == [(PINNED, True)]
    # The proxy serves provider/v4 only as a pseudo-version: a v4.0.0 pre-release naming the upstream commit.
    assert re.fullmatch(r"v4\.0\.0-\d{14}-[0-9a-f]{12}", PINNED), PINNED
    sums = [line.split() for line in (WRAPPER / "go.sum").read_text().splitlines()]
    provider_sums = sorted(version for module, version, _ in sums if module == PROVIDER)
    assert provider_sums == [PINNED, f"{PINNED}/go.mod"]
    assert "\ngo 1.26\n" in GO_MOD and GO_MOD.startswith("// make k8s-provider")


def test_main_embeds_exactly_the_two_files_the_script_generates_and_git_ignores_them():
    embedded = re.findall(r"^//go:embed (\S+)$", (CMD / "main.go").read_text(), re.M)
    assert sorted(embedded) == ["schema-embed.json", "terraform-mapping-embed.json"]
    moved = re.search(r'^mv ((?:"\$tmp/[^"]+" )+)"\$CMD/"$', SCRIPT.read_text(), re.M)
    assert moved, "the script no longer moves the generated files into the cmd folder"
    assert sorted(re.findall(r'"\$tmp/([^"]+)"', moved[1])) == sorted(embedded)
    for name in embedded:
        ignored = subprocess.run(["git", "-C", str(ROOT), "check-ignore", "-q", str(CMD / name)], check=False)
        assert ignored.returncode == 0, f"{name} is generated (5 MB) and must stay out of git"
    assert (
        'provider.Serve("kubernetes", version.Version, schema, terraformMapping)'
        in (CMD / "main.go").read_text()
    )


@pytest.mark.k8s_provider
def test_upstreams_generator_writes_the_names_main_embeds():
    """The names come from upstream's generate.go, which the script runs as it is (module cache, read-only)."""
    provider_build.ensure()  # the build downloads the module
    cache = Path(run("--print-path").stdout.strip()).parents[2] / "go" / "mod"
    generator = cache / f"{PROVIDER}@{PINNED}" / "cmd" / "pulumi-resource-kubernetes" / "generate.go"
    text = generator.read_text()
    for name in re.findall(r"^//go:embed (\S+)$", (CMD / "main.go").read_text(), re.M):
        assert f'os.WriteFile("./{name}"' in text
    assert 'os.LookupEnv("VERSION")' in text  # the script sets it: the schema carries the stamped version


def test_the_binary_goes_beside_the_engine(tmp_path: Path):
    """The engine's folder is on PATH wherever the engine runs, and Pulumi takes a plugin found on PATH."""
    env = {**os.environ, "RENDERLAB_TOOLS_CACHE": str(tmp_path)}
    engine_bin = subprocess.run(
        [str(ROOT / "scripts" / "build-tools.sh"), "--print-bin"],
        capture_output=True,
        text=True,
        env=env,
        check=True,
    ).stdout.strip()
    path = run("--print-path", env=env).stdout.strip()
    assert path == f"{engine_bin}/pulumi-resource-kubernetes"
    assert path.startswith(f"{tmp_path}/pulumi-v")
    assert list(tmp_path.iterdir()) == []  # printing the path creates nothing


def _path_without_go(tmp_path: Path) -> str:
    """A PATH holding only what the script runs before its Go check."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for tool in ("env", "bash", "dirname", "sed", "grep", "cat"):
        (bin_dir / tool).symlink_to(shutil.which(tool))
    return str(bin_dir)


def test_a_missing_go_is_one_clear_line_and_nothing_is_written(tmp_path: Path):
    cache = tmp_path / "cache"
    env = {"PATH": _path_without_go(tmp_path), "HOME": str(tmp_path), "RENDERLAB_TOOLS_CACHE": str(cache)}
    proc = run(env=env)
    assert proc.returncode == 1
    assert proc.stderr.splitlines() == [
        "build-k8s-provider: Go is not installed (Go >= 1.26 from go.dev; Debian 12's golang package is 1.19, too old)"
    ]
    assert proc.stdout == "" and not cache.exists()


def test_a_wrapper_without_the_direct_requirement_is_refused(tmp_path: Path):
    """`go mod tidy` marks the provider indirect if main.go stops importing it: the script says what to run."""
    for rel in ("scripts/build-k8s-provider.sh", "requirements/lock.txt", "tools/pulumi-kubernetes/go.mod"):
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / rel, tmp_path / rel)
    gomod = tmp_path / "tools/pulumi-kubernetes/go.mod"
    gomod.write_text(GO_MOD.replace(f"{PROVIDER} {PINNED}\n", f"{PROVIDER} {PINNED} // indirect\n"))
    assert required(gomod.read_text()) == [(PINNED, False)]
    proc = run(
        env={**os.environ, "RENDERLAB_TOOLS_CACHE": str(tmp_path / "cache")},
        script=tmp_path / SCRIPT.relative_to(ROOT),
    )
    assert proc.returncode == 1
    (line,) = proc.stderr.splitlines()
    assert f"does not require {PROVIDER} directly" in line
    assert f"go get {PROVIDER}@<version> && go mod tidy" in line
    assert not (tmp_path / "cache").exists()


def test_make_help_lists_the_target():
    out = subprocess.run(["make", "-s", "help"], cwd=ROOT, capture_output=True, text=True, check=True).stdout
    assert re.search(r"^  k8s-provider +build the Pulumi Kubernetes provider", out, re.M)


# --- the built provider ------------------------------------------------------------------------------------

BINARY = Path(run("--print-path").stdout.strip())
# Skips naming `make k8s-provider` where it is not built; in CI built or waited for (tests/provider_build.py).
built = pytest.mark.k8s_provider


@pytest.fixture
def provider(tmp_path: Path):
    with plugin_server.serve([str(provider_build.ensure())], tmp_path / "provider.stderr") as stub:
        yield stub


@built
def test_the_built_provider_reports_the_pinned_version_and_serves_its_schema(provider):
    """Both stamps hold: the version the binary reports (ldflags) and the one in the schema it embeds."""
    assert provider.GetPluginInfo(empty_pb2.Empty()).version == VERSION
    schema = json.loads(provider.GetSchema(proto.GetSchemaRequest(version=0)).schema)
    assert schema["name"] == "kubernetes" and schema["version"] == VERSION
    # The Python SDK (a newer release than this provider) names resources by type token over gRPC: every
    # kind the cluster layer creates must be one this provider serves, and the ConfigGroup one it constructs.
    config = load(ROOT / "Pulumi.example.yaml")
    blank = dict.fromkeys(manifests.SECRET_INPUTS + manifests.REGISTRY_INPUTS, "")
    objs = [o for group in manifests.all_objects(config, blank).values() for o in group]
    tokens = {cluster.type_token(o) for o in objs}
    assert len(tokens) == len({(o["apiVersion"], o["kind"]) for o in objs}) >= 12
    tokens |= {k8s.helm.v3.Release.pulumi_type, k8s.yaml.v2.ConfigGroup.pulumi_type}
    assert tokens <= set(schema["resources"]), tokens - set(schema["resources"])
    assert schema["resources"]["kubernetes:yaml/v2:ConfigGroup"]["isComponent"] is True


@built
def test_a_second_run_builds_nothing():
    provider_build.ensure()
    before = BINARY.stat().st_mtime_ns
    proc = run()
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == f"k8s-provider: pulumi-resource-kubernetes {VERSION} is built ({BINARY})\n"
    assert BINARY.stat().st_mtime_ns == before


@built
def test_a_run_while_another_builds_waits_for_it_then_builds_nothing():
    """CI builds the provider beside the suite; the checks that need it run the script and wait on its lock."""
    provider_build.ensure()
    lock = BINARY.parent / ".k8s-provider.lock"
    holder = subprocess.Popen(["flock", str(lock), "sleep", "3"])  # a build in progress holds it
    try:
        time.sleep(0.5)
        start = time.monotonic()
        proc = run()
        waited = time.monotonic() - start
    finally:
        holder.wait()
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines() == [
        "k8s-provider: another build of it is running; waiting for that one to finish",
        f"k8s-provider: pulumi-resource-kubernetes {VERSION} is built ({BINARY})",
    ]
    assert waited >= 2.0
