"""The stack's config, read through pulumi.Config and validated by the one lab config model."""

from __future__ import annotations

import json

import pulumi
from pulumi.runtime import config as runtime_config

from renderlab.lab.config import NAMESPACE, SECRET_KEYS, LabConfig, parse


def _keys() -> list[str]:
    keys = set(runtime_config.CONFIG.get()) | set(runtime_config.get_config_env())
    return sorted(k for k in keys if k.startswith(f"{NAMESPACE}:"))


def read() -> tuple[LabConfig, dict[str, pulumi.Output[str]]]:
    """(the validated lab config, the stack's secrets as secret Outputs). Bad config: one ConfigError
    listing every problem with its key path, before any resource is touched."""
    cfg = pulumi.Config(NAMESPACE)
    section: dict[str, object] = {}
    secrets: dict[str, pulumi.Output[str]] = {}
    for key in _keys():
        name = key.split(":", 1)[1]
        if name in SECRET_KEYS:
            value = cfg.get_secret(name)
            if value is not None:
                secrets[name] = value
                # The model only checks that the secret is set; its value stays an Output.
                section[key] = {"secure": "pulumi-secret"}
            continue
        raw = cfg.get(name)
        try:
            section[key] = json.loads(raw) if raw and raw[:1] in "[{" else _scalar(raw)
        except json.JSONDecodeError:
            section[key] = raw
    config = parse(
        {"config": section}, source=f"stack {pulumi.get_stack()} (Pulumi.{pulumi.get_stack()}.yaml)"
    )
    return config, secrets


def _scalar(raw: str | None) -> object:
    if raw is None:
        return None
    try:
        return json.loads(raw)
    except json.JSONDecodeError:
        return raw
