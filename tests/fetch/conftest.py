"""Fixtures for the fetch tests: a share folder, project sources, and a real tmpfs for full/read-only shares."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def share(tmp_path: Path) -> Path:
    root = tmp_path / "share"
    (root / "assets").mkdir(parents=True)
    return root


@pytest.fixture
def dest(share: Path) -> Path:
    return share / "assets" / "song"


def write_tree(root: Path, files: dict[str, bytes | None]) -> None:
    """Create/overwrite files (bytes) or delete them (None) under root."""
    for rel, content in files.items():
        path = root / rel
        if content is None:
            path.unlink()
        else:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(content)


def project_files(n: int = 6, size: int = 20_000, seed: int = 1) -> dict[str, bytes]:
    rnd = __import__("random").Random(seed)
    out = {f"audio/track{i}.wav": rnd.randbytes(size) for i in range(n // 2)}
    out |= {f"midi/part{i}.mid": rnd.randbytes(size // 10) for i in range(n - n // 2)}
    return out


def run_cli(*args: str, env: dict | None = None, timeout: int = 60) -> subprocess.CompletedProcess:
    full_env = {**os.environ, "PYTHONPATH": str(REPO), **(env or {})}
    return subprocess.run(
        [sys.executable, "-m", "renderlab.jobs.fetch", *args],
        cwd=REPO,
        env=full_env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


@contextlib.contextmanager
def tmpfs(path: Path, size: str, readonly: bool = False):
    """A real tmpfs of `size` at `path` (needs root with mount rights; the test skips with the reason otherwise)."""
    path.mkdir(parents=True, exist_ok=True)
    opts = f"size={size}" + (",ro" if readonly else "")
    res = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", opts, "tmpfs", str(path)], capture_output=True, text=True, check=False
    )
    if res.returncode != 0:
        pytest.skip(
            f"cannot mount a tmpfs here ({res.stderr.strip() or 'mount failed'}); needs root with CAP_SYS_ADMIN"
        )
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=False)
