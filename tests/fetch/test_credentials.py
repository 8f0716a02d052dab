"""Credentials from the environment or a mounted Secret folder, and that a secret never reaches the output."""

from __future__ import annotations

from pathlib import Path

import pytest

from renderlab.jobs.fetch import credentials
from renderlab.jobs.fetch.errors import AuthError, UsageError

FP = ":".join(["0A"] * 32)


def secret_dir(tmp_path: Path, **files: str) -> Path:
    d = tmp_path / "secret"
    d.mkdir()
    for name, value in files.items():
        (d / name).write_text(value + "\n")
    return d


def test_from_mounted_secret_folder(tmp_path: Path):
    d = secret_dir(tmp_path, user="fetcher", password="pw-1", fingerprint=FP.lower())
    c = credentials.load(str(d), env={})
    assert (c.user, c.secret, c.fingerprint, c.is_ticket) == ("fetcher", "pw-1", FP, False)
    assert "pw-1" not in repr(c)


def test_env_wins_and_folder_from_env(tmp_path: Path):
    d = secret_dir(tmp_path, user="fetcher", ticket="0123456789ABCDEF0123456789ABCDEF")
    c = credentials.load(None, env={"RENDERLAB_P4_SECRET_DIR": str(d), "P4USER": "other"})
    assert (c.user, c.is_ticket) == ("other", True)


@pytest.mark.parametrize(
    ("env", "error", "says"),
    [
        ({}, AuthError, "no Perforce user"),
        ({"P4USER": "u"}, AuthError, "no password or ticket"),
        ({"P4USER": "u", "P4PASSWD": "p", "P4TRUST_FINGERPRINT": "nope"}, UsageError, "p4 trust -l"),
        ({"RENDERLAB_P4_SECRET_DIR": "/nonexistent/secret"}, UsageError, "does not exist"),
    ],
)
def test_missing_or_malformed(env, error, says):
    with pytest.raises(error, match=says):
        credentials.load(None, env=env)
