"""The docs tests use the shared browser fixtures (Playwright + Debian's chromium), and folders other users may
read: started by root, the docs server runs nginx as nobody (pytest's own tmp folders are private to root)."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.browser_support import browser, browser_page  # noqa: F401  (pytest fixtures)


@pytest.fixture(scope="session")
def readable_tmp() -> Iterator[Callable[[str], Path]]:
    made: list[Path] = []

    def make(name: str) -> Path:
        folder = Path(tempfile.mkdtemp(prefix=f"rl-{name}-"))
        folder.chmod(0o755)
        made.append(folder)
        return folder

    yield make
    for folder in made:
        shutil.rmtree(folder, ignore_errors=True)
