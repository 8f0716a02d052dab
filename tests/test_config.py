"""The lab config model over valid/ and invalid/ fixture files, and the check-config command."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from renderlab.lab.config import ConfigError, load

ROOT = Path(__file__).resolve().parents[1]
FIXTURES = ROOT / "tests" / "fixtures" / "config"
VALID = sorted((FIXTURES / "valid").glob("*.yaml"))
INVALID = sorted((FIXTURES / "invalid").glob("*.yaml"))


def expected_messages(path: Path) -> list[str]:
    lines = path.read_text().splitlines()
    return [line.removeprefix("# expect: ") for line in lines if line.startswith("# expect: ")]


def test_fixture_sets_are_big_enough():
    assert len(VALID) >= 2
    assert len(INVALID) >= 12
    for path in INVALID:
        assert expected_messages(path), f"{path.name} declares no '# expect:' line"


def test_example_is_valid_and_complete():
    config = load(ROOT / "Pulumi.example.yaml")
    assert sorted(h.role for h in config.hosts.values()) == sorted(
        ["control_plane", "worker", "storage", "perforce", "airflow"]
    )
    assert config.address("storage") == "10.20.0.13"
    assert config.proxmox_api_token is not None
    assert config.versions.blender == "5.0.1"


@pytest.mark.parametrize("path", VALID, ids=lambda p: p.stem)
def test_valid(path: Path):
    config = load(path)
    assert set(config.hosts) == set(config.network.hosts)


@pytest.mark.parametrize("path", INVALID, ids=lambda p: p.stem)
def test_invalid(path: Path):
    with pytest.raises(ConfigError) as info:
        load(path)
    text = str(info.value)
    for message in expected_messages(path):
        assert message in text
    # Every problem is listed with its key path (or the file-level reason) on its own line.
    assert len(info.value.problems) >= len(expected_messages(path))


@pytest.mark.parametrize(
    "name",
    [
        "unknown-key-typo",
        "section-key-typo",
        "section-name-typo",
        "optional-key-typo",
        "endpoint-with-api-path",
    ],
)
def test_one_mistake_is_one_problem(name: str):
    """A misspelt key is one "did you mean", not "unknown key" plus "required key is missing"."""
    with pytest.raises(ConfigError) as info:
        load(FIXTURES / "invalid" / f"{name}.yaml")
    assert len(info.value.problems) == 1, info.value.problems


def test_the_placeholders_are_the_examples_own():
    """The refused placeholders are exactly what Pulumi.example.yaml holds (it validates only as itself)."""
    from renderlab.lab import config as lab_config

    text = (ROOT / "Pulumi.example.yaml").read_text()
    assert lab_config.EXAMPLE_TOKEN in text and lab_config.EXAMPLE_KEY in text
    load(ROOT / "Pulumi.example.yaml")


def test_many_problems_are_reported_at_once():
    with pytest.raises(ConfigError) as info:
        load(FIXTURES / "invalid" / "many-problems-at-once.yaml")
    assert len(info.value.problems) == 4


def test_missing_file_is_one_clear_error(tmp_path: Path):
    with pytest.raises(ConfigError, match="cannot read the file"):
        load(tmp_path / "nope.yaml")


def test_plain_secret_value_is_never_echoed():
    with pytest.raises(ConfigError) as info:
        load(FIXTURES / "invalid" / "plain-proxmox-token.yaml")
    assert "0b0e2c47" not in str(info.value)


def _check(config: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "renderlab.lab.check_config", str(config)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )


def test_check_command_accepts_example():
    result = _check(ROOT / "Pulumi.example.yaml")
    assert result.returncode == 0, result.stderr
    assert "OK" in result.stdout


@pytest.mark.parametrize("path", INVALID, ids=lambda p: p.stem)
def test_check_command_rejects_invalid(path: Path):
    result = _check(path)
    assert result.returncode == 1
    for message in expected_messages(path):
        assert message in result.stderr
    assert result.stdout == ""


def test_make_check_config_wiring():
    """`make check-config CONFIG=...` is the user's command: exit status and messages pass through."""
    bad = FIXTURES / "invalid" / "address-outside-cidr.yaml"
    ok = subprocess.run(["make", "-s", "check-config"], cwd=ROOT, capture_output=True, text=True, check=False)
    assert ok.returncode == 0, ok.stderr
    ko = subprocess.run(
        ["make", "-s", "check-config", f"CONFIG={bad}"], cwd=ROOT, capture_output=True, text=True, check=False
    )
    assert ko.returncode != 0
    assert "network.hosts.storage 10.0.1.5 is outside 10.20.0.0/24" in ko.stderr


def test_a_share_too_small_for_one_song_at_the_preset_is_a_warning(tmp_path: Path):
    """Valid (exit 0), but check-config says the storage disk cannot hold one song's 4K frames."""
    text = (FIXTURES / "valid" / "example-compact.yaml").read_text()
    small = text.replace("preset: demo", "preset: 4k60").replace(
        "storage: {role: storage, vmid: 213, cores: 2, memory_mib: 2048, disk_gib: 200}",
        "storage: {role: storage, vmid: 213, cores: 2, memory_mib: 2048, disk_gib: 20}",
    )
    assert small.count("disk_gib: 20}") == 1 and "4k60" in small
    path = tmp_path / "Pulumi.small.yaml"
    path.write_text(small)
    result = _check(path)
    assert result.returncode == 0, result.stderr
    assert "warning: hosts.storage.disk_gib 20 GiB leaves ~16 GiB for the share" in result.stderr
    assert "preset 4k60 take ~" in result.stderr
    ok = _check(FIXTURES / "valid" / "example-compact.yaml")
    assert ok.returncode == 0 and "warning" not in ok.stderr


def test_a_k3s_stack_file_gets_one_error_naming_every_rename():
    """A stack file from before kubeadm: one line that says what to rename, not a cascade of follow-on errors."""
    with pytest.raises(ConfigError) as info:
        load(FIXTURES / "invalid" / "k3s-stack-file.yaml")
    (problem,) = info.value.problems
    for old, new in (("versions.k3s", "renderlab:kubernetes:"), ("k3s_server", "control_plane")):
        assert old in problem and new in problem
    assert "k3s_agent -> role worker" in problem


def test_kubernetes_ranges_are_checked():
    config = load(ROOT / "Pulumi.example.yaml")
    assert config.kubernetes.version == "1.35.8" and config.kubernetes.pause == "3.10.1"
    assert not config.kubernetes.pod_cidr.overlaps(config.kubernetes.service_cidr)
