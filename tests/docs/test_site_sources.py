"""The generated pages of the docs site: the config reference covers the whole model with the example's
comments, the config errors page is what the check prints, nothing generated is committed, and mermaid is
the pinned package or nothing."""

from __future__ import annotations

import importlib.util
import re
import subprocess
import typing

import pytest
from pydantic import BaseModel

from renderlab.lab import config as labconfig
from renderlab.lab import reference as config_reference
from tests.docs.runs import REPO


def _hooks():
    spec = importlib.util.spec_from_file_location("docs_hooks", REPO / "docs" / "hooks.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _model_paths(model: type[BaseModel], prefix: str = "") -> dict[str, object]:
    """Every key path of the model (maps as <name>) -> its FieldInfo, walked independently of the generator."""
    out: dict[str, object] = {}
    for name, info in model.model_fields.items():
        path = f"{prefix}.{name}" if prefix else name
        tp = info.annotation
        if typing.get_origin(tp) is dict:
            path += ".<name>"
            tp = typing.get_args(tp)[1]
        out[path] = info
        inner = [a for a in (typing.get_args(tp) or (tp,)) if isinstance(a, type)]
        for a in inner:
            if issubclass(a, BaseModel) and a is not labconfig.SecureValue:
                out.update(_model_paths(a, path))
    return out


def _rows(text: str) -> dict[str, str]:
    """key path -> its row of the reference tables (the first table row that names it)."""
    rows: dict[str, str] = {}
    for line in text.splitlines():
        if m := re.match(r"\| `([^`]+)` \|", line):
            rows.setdefault(m.group(1), line)
    return rows


def test_reference_has_every_key_with_its_default():
    rows = _rows(config_reference.markdown())
    paths = _model_paths(labconfig.LabConfig)
    assert set(paths) <= set(rows), sorted(set(paths) - set(rows))
    for path, info in paths.items():
        if info.is_required():
            assert "| required |" in rows[path], path
        elif isinstance(info.default, int | str) and not isinstance(info.default, bool):
            assert f"`{info.default}`" in rows[path], path
    # A constraint from the model itself, and a check told in the check's own words.
    ge = labconfig.Docs.model_fields["node_port"].metadata
    assert any(f">= {m.ge}" in rows["docs.node_port"] for m in ge if hasattr(m, "ge"))
    assert "pin an exact release such as 1.35.8" in rows["kubernetes.version"]


def test_reference_carries_the_examples_comments():
    """Every `key: value  # comment` line of Pulumi.example.yaml: its comment is in that key's row."""
    rows = _rows(config_reference.markdown())
    text = config_reference.markdown()
    found = 0
    for line in (REPO / "Pulumi.example.yaml").read_text().splitlines():
        m = re.match(r"^\s+([a-z_]+): [^#{]+?\s+#\s*(.+)$", line)
        if m:
            assert m.group(2).strip() in text, line
            found += 1
    assert found >= 30
    assert "the node that hosts every VM" in rows["proxmox.node"]


def test_generated_pages_are_not_committed():
    tracked = subprocess.run(
        ["git", "ls-files", "docs"], cwd=REPO, capture_output=True, text=True, check=True
    )
    names = tracked.stdout.split()
    assert "docs/index.md" in names
    assert not [n for n in names if n.startswith("docs/reference/")], names


def test_config_errors_page_is_what_the_check_prints():
    page = _hooks().config_errors_page()
    fixtures = sorted((REPO / "tests" / "fixtures" / "config" / "invalid").glob("*.yaml"))
    assert page.count("\n## ") == len(fixtures)
    for path in fixtures:
        for line in path.read_text().splitlines():
            if line.startswith("# expect: "):
                assert line.removeprefix("# expect: ") in page, path.name


def test_mermaid_is_the_pinned_package_or_nothing(tmp_path, monkeypatch):
    hooks = _hooks()
    data = hooks.vendored_mermaid()  # the real pinned file (fetched once with npm into .cache/docs)
    assert data.startswith(b'"use strict";') or b"mermaid" in data[:2000]
    assert len(data) > 1_000_000
    import json

    pin = json.loads((REPO / "docs" / "vendor.json").read_text())["mermaid"]
    monkeypatch.setattr(hooks, "CACHE", tmp_path)
    forged = tmp_path / f"mermaid-{pin['version']}.tgz"
    forged.write_bytes(b"not the package")
    with pytest.raises(hooks.PluginError, match="digest differs from the pin"):
        hooks.vendored_mermaid()
    assert not forged.exists()  # removed, so the next build fetches the real one
