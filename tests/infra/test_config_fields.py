"""The lab config fields the infra layer added: the kubeconfig secret and the pinned cluster versions."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest

from renderlab.lab.config import ConfigError, parse
from tests.example_stack import own

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = own()  # the example with the test's own token and key


def with_config(**changes):
    stack = copy.deepcopy(EXAMPLE)
    for key, value in changes.items():
        stack["config"][f"renderlab:{key}"] = value
    return stack


def test_example_pins_the_cluster_versions():
    config = parse(EXAMPLE)
    assert config.versions.csi_driver_smb == "v1.17.0" and config.versions.registry == "3.1.1"
    assert config.kubeconfig is None


def test_versions_default_when_left_out():
    versions = {
        k: v
        for k, v in EXAMPLE["config"]["renderlab:versions"].items()
        if k not in ("csi_driver_smb", "registry")
    }
    config = parse(with_config(versions=versions))
    assert config.versions.csi_driver_smb == "v1.17.0"


def test_floating_chart_version_is_refused():
    versions = {**EXAMPLE["config"]["renderlab:versions"], "csi_driver_smb": "latest"}
    with pytest.raises(ConfigError, match=r"versions.csi_driver_smb: 'latest' is not a pinned version"):
        parse(with_config(versions=versions))


def test_plain_kubeconfig_is_refused_with_the_fix():
    with pytest.raises(
        ConfigError, match=r"kubeconfig: holds a plain value.*pulumi config set --secret renderlab:kubeconfig"
    ):
        parse(with_config(kubeconfig="apiVersion: v1"))


def test_encrypted_kubeconfig_is_accepted():
    assert parse(with_config(kubeconfig={"secure": "v1:abcdefgh"})).kubeconfig is not None


def test_trust_fingerprint_reaches_the_p4_secret():
    from infra import manifests

    fpr = ":".join(["AB"] * 20)
    perforce = {**EXAMPLE["config"]["renderlab:perforce"], "trust_fingerprint": fpr}
    config = parse(with_config(perforce=perforce))
    (_, p4) = manifests.secrets(config, dict.fromkeys(manifests.SECRET_INPUTS, "x"))
    assert p4["metadata"]["name"] == "renderlab-p4" and p4["stringData"]["fingerprint"] == fpr


def test_malformed_fingerprint_is_refused():
    perforce = {**EXAMPLE["config"]["renderlab:perforce"], "trust_fingerprint": "not-a-fingerprint"}
    with pytest.raises(ConfigError, match="perforce.trust_fingerprint"):
        parse(with_config(perforce=perforce))
