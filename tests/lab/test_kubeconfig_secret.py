"""make lab's cluster stage hands the fetched kubeconfig to the stack (renderlab/lab/kubeconfig_secret.py):
set once, left alone while unchanged, refused when it is not a private kubeconfig, never printed.

The Pulumi CLI here is a stand-in script that keeps the stack's config in a file and logs each call (the real
CLI's `config set --secret` is exercised by the engine lane); it fails `config get` of a key not set, as
Pulumi does."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from renderlab.lab import kubeconfig_secret
from tests.infra.engine import Engine, missing_tools

KUBECONFIG = """\
apiVersion: v1
kind: Config
clusters:
- cluster: {certificate-authority-data: AAAA, server: 'https://10.0.0.11:6443'}
  name: kubernetes
contexts:
- context: {cluster: kubernetes, user: kubernetes-admin}
  name: kubernetes-admin@kubernetes
current-context: kubernetes-admin@kubernetes
users:
- name: kubernetes-admin
  user: {client-certificate-data: BBBB, client-key-data: SECRETKEYDATA}
"""

FAKE_PULUMI = """\
#!/bin/sh
echo "$*" >> "$FAKE_DIR/calls.log"
case "$1 $2" in
  "config get") [ -f "$FAKE_DIR/value" ] || { echo "error: configuration key not found" >&2; exit 255; }
                cat "$FAKE_DIR/value"; echo ;;
  "config set") [ -f "$FAKE_DIR/fail-set" ] && { echo "error: the stack is locked" >&2; exit 255; }
                cat > "$FAKE_DIR/value" ;;
esac
"""


@pytest.fixture
def fake(tmp_path: Path, monkeypatch) -> Path:
    cli = tmp_path / "pulumi"
    cli.write_text(FAKE_PULUMI)
    cli.chmod(0o755)
    monkeypatch.setenv("FAKE_DIR", str(tmp_path))
    monkeypatch.setenv("PULUMI_CONFIG_PASSPHRASE", "test-only")
    return tmp_path


def kubeconfig(folder: Path, text: str = KUBECONFIG, mode: int = 0o600) -> Path:
    path = folder / "kubeconfig"
    path.write_text(text)
    path.chmod(mode)
    return path


def calls(fake: Path) -> list[str]:
    log = fake / "calls.log"
    return [line.split(" --stack")[0] for line in log.read_text().splitlines()] if log.exists() else []


def test_set_once_then_left_alone_until_it_changes(fake: Path):
    path = kubeconfig(fake)
    assert kubeconfig_secret.hand_over(path, "lab", str(fake / "pulumi")) is True
    assert calls(fake) == ["config get renderlab:kubeconfig", "config set --secret renderlab:kubeconfig"]
    assert (fake / "value").read_text() == KUBECONFIG
    # Unchanged: read back and compared, not set again (a set re-encrypts and rewrites the stack file).
    assert kubeconfig_secret.hand_over(path, "lab", str(fake / "pulumi")) is False
    assert calls(fake)[2:] == ["config get renderlab:kubeconfig"]
    # The cluster was rebuilt: a new admin credential is handed over.
    kubeconfig(fake, KUBECONFIG.replace("SECRETKEYDATA", "NEWKEYDATA"))
    assert kubeconfig_secret.hand_over(path, "lab", str(fake / "pulumi")) is True
    assert "NEWKEYDATA" in (fake / "value").read_text()


def test_the_value_is_never_printed(fake: Path, capsys):
    path = kubeconfig(fake)
    argv = ["--stack", "lab", "--kubeconfig", str(path), "--pulumi", str(fake / "pulumi")]
    assert kubeconfig_secret.main(argv) == 0
    assert kubeconfig_secret.main(argv) == 0
    out, err = capsys.readouterr()
    assert out.splitlines() == [
        f"cluster: renderlab:kubeconfig of stack lab set from {path} (secret)",
        f"cluster: renderlab:kubeconfig of stack lab already holds {path}: unchanged",
    ]
    assert "SECRETKEYDATA" not in out + err


def test_a_failed_set_is_one_error_without_the_value(fake: Path, capsys):
    (fake / "fail-set").touch()
    argv = ["--kubeconfig", str(kubeconfig(fake)), "--pulumi", str(fake / "pulumi")]
    assert kubeconfig_secret.main(argv) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "the stack is locked" in err and "SECRETKEYDATA" not in err


@pytest.mark.parametrize(
    ("text", "mode", "says"),
    [
        (KUBECONFIG, 0o644, "readable by others (mode 0644)"),
        (KUBECONFIG.replace("https://", "http://"), 0o600, "without an https:// server"),
        ("kind: Config\nclusters: []\n", 0o600, "no clusters"),
        ("[1, 2]\n", 0o600, "no `kind: Config` mapping"),
        ("a: [unclosed\n", 0o600, "not valid YAML"),
        (KUBECONFIG.replace("current-context: kubernetes-admin@kubernetes", "current-context: ''"), 0o600,
         "no current-context"),
    ],
)  # fmt: skip
def test_what_is_not_a_private_kubeconfig_is_refused_before_pulumi_runs(fake: Path, text, mode, says):
    path = kubeconfig(fake, text, mode)
    with pytest.raises(kubeconfig_secret.KubeconfigError, match="kubeconfig|readable") as e:
        kubeconfig_secret.hand_over(path, "lab", str(fake / "pulumi"))
    assert says in str(e.value) and str(path) in str(e.value)
    assert calls(fake) == []


def test_a_link_a_missing_file_and_an_oversized_one_are_refused(fake: Path):
    target = kubeconfig(fake)
    link = fake / "link"
    link.symlink_to(target)
    for path, says in ((link, "no link"), (fake / "none", "make lab-hosts")):
        with pytest.raises(kubeconfig_secret.KubeconfigError, match=says):
            kubeconfig_secret.read(path)
    big = kubeconfig(fake, "#" * (kubeconfig_secret.MAX_BYTES + 1))
    with pytest.raises(kubeconfig_secret.KubeconfigError, match="over"):
        kubeconfig_secret.read(big)
    assert os.access(target, os.R_OK)


def test_with_the_real_pulumi_cli_a_second_hand_over_leaves_the_stack_file_as_it_was(
    tmp_path: Path, monkeypatch
):
    """The real CLI (make tools): the value lands encrypted, reads back equal, and the unchanged second run
    rewrites nothing (a set would re-encrypt: new ciphertext, a changed stack file)."""
    why = missing_tools()
    if why:
        pytest.skip(why)
    engine = Engine(tmp_path / "engine")
    engine.run("login", f"file://{engine.state}")
    engine.run("stack", "init", engine.stack, "--secrets-provider", "passphrase")
    for key, value in engine.env.items():
        monkeypatch.setenv(key, value)
    monkeypatch.chdir(engine.project)
    path = kubeconfig(tmp_path)
    assert kubeconfig_secret.hand_over(path, engine.stack, engine.pulumi) is True
    stored = engine.stack_file.read_bytes()
    assert b"SECRETKEYDATA" not in stored and b"secure:" in stored
    got = engine.run("config", "get", kubeconfig_secret.KEY).stdout
    assert got.rstrip("\n") == KUBECONFIG.rstrip("\n")
    assert kubeconfig_secret.hand_over(path, engine.stack, engine.pulumi) is False
    assert engine.stack_file.read_bytes() == stored


def test_an_alias_bomb_is_refused_without_expanding(fake: Path):
    levels = ["a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    levels += [f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 10)}]" for i in range(1, 9)]
    path = kubeconfig(fake, "\n".join(levels) + "\n")
    with pytest.raises(kubeconfig_secret.KubeconfigError, match="not a kubeconfig"):
        kubeconfig_secret.read(path)


def test_a_yaml_error_does_not_show_the_line_that_holds_the_key(fake: Path):
    # PyYAML's own message quotes this line (checked): the old error showed the client key.
    bad = KUBECONFIG.replace("client-key-data: SECRETKEYDATA}", "client-key-data: SECRETKEYDATA: x}")
    path = kubeconfig(fake, bad)
    with pytest.raises(kubeconfig_secret.KubeconfigError, match="not valid YAML at line") as e:
        kubeconfig_secret.read(path)
    assert "SECRETKEYDATA" not in str(e.value)
