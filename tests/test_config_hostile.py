"""Hostile and careless stack files (issue 14): bounded work, one clear line, no traceback, no secret shown."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest

from renderlab.lab.config import ConfigError, Limits, load

ROOT = Path(__file__).resolve().parents[1]
INVALID = ROOT / "tests" / "fixtures" / "config" / "invalid"


def check(*args: str, timeout: float = 30) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "renderlab.lab.check_config", *args],
        cwd=ROOT, capture_output=True, text=True, timeout=timeout, check=False,
    )  # fmt: skip


@pytest.mark.parametrize(
    "name",
    ["yaml-recursive-alias", "yaml-alias-bomb", "yaml-deep-nesting", "yaml-list-as-key",
     "yaml-syntax-error-on-a-secret-line"],
)  # fmt: skip
def test_hostile_yaml_is_one_line_and_exit_1_quickly(name: str):
    t0 = time.monotonic()
    res = check(str(INVALID / f"{name}.yaml"))
    assert time.monotonic() - t0 < 20
    assert res.returncode == 1, res.stderr
    assert "Traceback" not in res.stderr
    assert len(res.stderr.strip().splitlines()) == 1, res.stderr
    assert res.stdout == ""


def test_a_yaml_syntax_error_never_prints_the_line_it_is_on():
    res = check(str(INVALID / "yaml-syntax-error-on-a-secret-line.yaml"))
    assert "s3cr3t" not in res.stderr and "0b0e2c47" not in res.stderr
    assert "line 4, column 47" in res.stderr


def test_non_utf8_file_is_one_clear_line(tmp_path: Path):
    path = tmp_path / "Pulumi.bad.yaml"
    path.write_bytes(b"config:\n  renderlab:pipeline: {backend: \xff\xfe}\n")
    res = check(str(path))
    assert res.returncode == 1
    [line] = res.stderr.strip().splitlines()
    assert "not UTF-8" in line and "byte 0xff at offset 40" in line


def test_bounds_are_named_and_overridable(tmp_path: Path):
    bomb = INVALID / "yaml-alias-bomb.yaml"
    with pytest.raises(ConfigError, match=r"--max-yaml-nodes"):
        load(bomb)
    # A larger bound lets a big (but finite) document through to the model's own checks.
    small = tmp_path / "aliases.yaml"
    small.write_text("config:\n  renderlab:a: &a [x, x, x]\n  renderlab:b: [*a, *a, *a]\n")
    with pytest.raises(ConfigError, match="--max-yaml-nodes 5"):
        load(small, Limits(max_nodes=5))
    with pytest.raises(ConfigError) as info:
        load(small, Limits(max_nodes=100))
    assert "max-yaml-nodes" not in str(info.value)
    big = tmp_path / "big.yaml"
    big.write_text("# " + "x" * 2000 + "\nconfig: {}\n")
    with pytest.raises(ConfigError, match="--max-yaml-bytes 1000"):
        load(big, Limits(max_bytes=1000))
    res = check(str(small), "--max-yaml-nodes", "5")
    assert res.returncode == 1 and "--max-yaml-nodes 5" in res.stderr
    deep = tmp_path / "deep.yaml"
    deep.write_text("config:\n  renderlab:x: " + "[" * 40 + "]" * 40 + "\n")
    with pytest.raises(ConfigError, match="--max-yaml-depth 20"):
        load(deep, Limits(max_depth=20))


def test_the_example_is_well_inside_the_bounds():
    load(ROOT / "Pulumi.example.yaml")


def test_deep_flow_nesting_is_refused_as_the_scanner_meets_it(tmp_path: Path):
    """The depth bound is checked inside PyYAML's scanner, at the 65th open bracket: no token stream of a
    huge nesting is built first (the long fuzz run saw 15 s on a busy machine for 6 KB of brackets; the
    scanner-level check answers in milliseconds, measured: 0.02 s for 400 KB vs 0.74 s before)."""
    path = tmp_path / "deep.yaml"
    path.write_text("config: " + "[" * 200_000 + "]" * 200_000 + "\n")
    with pytest.raises(ConfigError, match=r"nested deeper than 64 levels \(line 1\)"):
        load(path)


# --- issue 28, class 4: values that reach Ansible are validated to their shape and marked unsafe ---------

EXAMPLE = ROOT / "Pulumi.example.yaml"
KEY_LINE = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIExampleKeyReplaceWithYourOwnPublicKey0000 you@workstation"


def _with_key(tmp_path: Path, key_yaml: str) -> Path:
    text = EXAMPLE.read_text()
    assert KEY_LINE in text
    path = tmp_path / "Pulumi.lab.yaml"
    path.write_text(text.replace(KEY_LINE, key_yaml))
    return path


@pytest.mark.parametrize(
    "key_yaml",
    [
        # a second key line, and Jinja the controller would evaluate
        '"ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIExampleKey me\\nssh-rsa AAAAB3NzaC1yc2EAAAADAQAB evil"',
        "\"ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIExampleKey {{ lookup('pipe', 'id') }}\"",
        '"ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIExampleKey me\\rssh-rsa AAAAB3NzaC1yc2EAAAADAQAB"',
        "ssh-rsa AAAAC3NzaC1lZDI1NTE5AAAAIExampleKey",  # the blob is an ed25519 key
        "ssh-ed25519 AAAA!!notbase64",
        "ssh-dss AAAAB3NzaC1kc3MAAACBAP",
        '"ssh-ed25519\tAAAAC3NzaC1lZDI1NTE5AAAAIExampleKey me\u2028ssh-rsa AAAAB3NzaC1yc2E"',  # a Unicode line break
    ],
    ids=["newline-second-key", "jinja-comment", "carriage-return", "type-mismatch", "not-base64", "dsa",
         "unicode-line-separator"],
)  # fmt: skip
def test_an_ssh_key_is_one_line_of_one_key(tmp_path: Path, key_yaml: str):
    res = check(str(_with_key(tmp_path, key_yaml)))
    assert res.returncode == 1, res.stderr
    [line] = res.stderr.strip().splitlines()
    assert "ssh.public_keys.0" in line, line


def test_the_inventory_marks_every_string_unsafe_and_ansible_keeps_it_literal(tmp_path: Path):
    """Through Ansible's own loader and templar: a string in the written inventory is data, never a template
    (the Jinja here is put in after validation, as a value no rule foresaw would be)."""
    from ansible.parsing.dataloader import DataLoader
    from ansible.template import Templar

    from renderlab.lab import ansible_unsafe
    from renderlab.lab import inventory as inventory_cli

    out = tmp_path / "inv.yml"
    assert inventory_cli.main([str(EXAMPLE), "-o", str(out)]) == 0
    written = DataLoader().load(out.read_text())
    assert written["all"]["vars"]["renderlab_ssh_public_keys"][0].__class__.__name__ == "AnsibleUnsafeText"
    inv = ansible_unsafe.plain(__import__("json").loads(out.read_text()))
    inv["all"]["vars"]["renderlab_ssh_public_keys"] = ["ssh-ed25519 AAAA {{ 6 * 7 }}"]
    loaded = DataLoader().load(ansible_unsafe.dumps(inv))
    template = (ROOT / "ansible" / "roles" / "common" / "templates" / "authorized_keys.j2").read_text()
    variables = {**loaded["all"]["vars"], "ansible_managed": "managed"}
    variables["common_admin_ssh_keys"] = variables["renderlab_ssh_public_keys"]
    text = Templar(loader=DataLoader(), variables=variables).template(template)
    assert "ssh-ed25519 AAAA {{ 6 * 7 }}" in text and "42" not in text


# --- issue 28, class 5: destructive paths are refused ----------------------------------------------------


@pytest.mark.parametrize(
    ("field", "value"),
    [("share.path", "/"), ("share.path", "/etc"), ("share.path", "/etc/samba"), ("share.path", "/srv"),
     ("share.path", "/srv/../etc"), ("share.path", "/srv/render/"), ("share.path", "/srv//render"),
     ("share.path", "/usr/local/render"), ("share.path", "/home"), ("share.path", "/var/lib"),
     ("perforce.data_root", "/"), ("perforce.data_root", "/opt"), ("perforce.data_root", "/root/p4"),
     ("perforce.data_root", "/opt/./perforce"), ("perforce.data_root", "/var/lib/../../boot"),
     ("perforce.projects_path", "//depot/songs/.."), ("perforce.projects_path", "//depot/./songs")],
)  # fmt: skip
def test_system_folders_and_non_normalized_paths_are_refused(tmp_path: Path, field: str, value: str):
    import yaml

    doc = yaml.safe_load(EXAMPLE.read_text())
    section, key = field.split(".")
    doc["config"][f"renderlab:{section}"][key] = value
    path = tmp_path / "Pulumi.lab.yaml"
    path.write_text(yaml.safe_dump(doc))
    res = check(str(path))
    assert res.returncode == 1, res.stderr
    [line] = res.stderr.strip().splitlines()
    assert field in line, line


@pytest.mark.parametrize("value", ["/srv/render", "/data/render", "/var/lib/renderlab", "/opt/perforce/x"])
def test_ordinary_data_folders_pass(tmp_path: Path, value: str):
    import yaml

    doc = yaml.safe_load(EXAMPLE.read_text())
    doc["config"]["renderlab:share"]["path"] = value
    doc["config"]["renderlab:perforce"]["data_root"] = value + "-p4"
    path = tmp_path / "Pulumi.lab.yaml"
    path.write_text(yaml.safe_dump(doc))
    res = check(str(path))
    assert res.returncode == 0, res.stderr
