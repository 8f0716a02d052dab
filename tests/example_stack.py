"""Pulumi.example.yaml as a test's own stack file: the example's placeholders (refused in any stack file but
the example, renderlab/lab/config.py) replaced by values of the test's own."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import yaml

from renderlab.lab.config import EXAMPLE_KEY, EXAMPLE_TOKEN

ROOT = Path(__file__).resolve().parents[1]
TEST_KEY = "AAAAC3NzaC1lZDI1NTE5AAAAIFixtureKeyOfTheConfigTests000000000000000"
TEST_TOKEN = "v1:ciphertext-of-the-config-tests-fixture"


def own_text(text: str | None = None) -> str:
    text = (ROOT / "Pulumi.example.yaml").read_text() if text is None else text
    return text.replace(EXAMPLE_KEY, TEST_KEY).replace(EXAMPLE_TOKEN, TEST_TOKEN)


def own(data: dict[str, Any] | None = None) -> dict[str, Any]:
    """The example's whole document (or a `config:` mapping of it), placeholders replaced, as a new dict."""
    data = yaml.safe_load((ROOT / "Pulumi.example.yaml").read_text()) if data is None else copy.deepcopy(data)
    return yaml.safe_load(own_text(yaml.safe_dump(data, sort_keys=False)))
