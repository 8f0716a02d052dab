"""Shared browser fixtures: Playwright driving Debian's chromium, headless.

Playwright's own browser download cannot work here (no internet besides the package registries), so the
browser is Debian's `chromium` package (requirements/apt-docs.txt), launched through `executable_path`.
Use it from any test folder's conftest.py:

    from tests.browser_support import browser, browser_page  # noqa: F401  (pytest fixtures)

`browser_page` is a fresh page that records every console error, uncaught page error and failed request;
call `.assert_clean()` at the end of a test, `.screenshot(name)` to keep a PNG under the test's tmp dir.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

# The real binary: /usr/bin/chromium is Debian's wrapper script, which adds flags Playwright does not expect.
CANDIDATES = ("/usr/lib/chromium/chromium", "/usr/bin/chromium", "/usr/bin/chromium-browser")


def chromium_path() -> str:
    """$RENDERLAB_CHROMIUM, else Debian's chromium; a clear failure when there is none."""
    wanted = os.environ.get("RENDERLAB_CHROMIUM")
    if wanted:
        if not os.access(wanted, os.X_OK):
            pytest.fail(f"RENDERLAB_CHROMIUM={wanted} is not an executable file")
        return wanted
    for path in CANDIDATES:
        if os.access(path, os.X_OK):
            return path
    found = shutil.which("chromium")
    if found:
        return found
    pytest.fail(
        "no chromium found (looked at " + ", ".join(CANDIDATES) + "); install Debian's chromium with "
        "`make apt` (requirements/apt-docs.txt) or set RENDERLAB_CHROMIUM"
    )


@pytest.fixture(scope="module")
def browser():
    """One headless chromium per test module (Playwright's sync API). Not session-wide: while Playwright runs,
    its event loop counts as running in this thread, and later tests that run their own asyncio loop (the
    Pulumi mocks) would fail with "Cannot run the event loop while another loop is running"."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        b = pw.chromium.launch(
            executable_path=chromium_path(),
            headless=True,
            # Media in a headless test: play without a user gesture; no GPU in the test machines.
            args=["--autoplay-policy=no-user-gesture-required", "--disable-gpu", "--mute-audio"],
        )
        try:
            yield b
        finally:
            b.close()


@dataclass
class BrowserPage:
    page: object  # playwright.sync_api.Page
    shots: Path
    problems: list[str] = field(default_factory=list)

    def screenshot(self, name: str, full_page: bool = True) -> Path:
        path = self.shots / f"{name}.png"
        self.page.screenshot(path=str(path), full_page=full_page)  # type: ignore[attr-defined]
        print(f"screenshot: {path}")
        return path

    def assert_clean(self) -> None:
        assert not self.problems, "the browser reported:\n" + "\n".join(self.problems)


@pytest.fixture
def browser_page(browser, tmp_path) -> Iterator[BrowserPage]:
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()
    shots = tmp_path / "screenshots"
    shots.mkdir()
    bp = BrowserPage(page, shots)
    page.on(
        "console", lambda m: bp.problems.append(f"console {m.type}: {m.text}") if m.type == "error" else None
    )
    page.on("pageerror", lambda e: bp.problems.append(f"page error: {e}"))
    page.on("requestfailed", lambda r: bp.problems.append(f"request failed: {r.url} ({r.failure})"))
    page.on(
        "response",
        lambda r: bp.problems.append(f"HTTP {r.status}: {r.url}") if r.status >= 400 else None,
    )
    try:
        yield bp
    finally:
        context.close()
