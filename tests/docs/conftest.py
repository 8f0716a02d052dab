"""The docs tests use the shared browser fixtures (Playwright + Debian's chromium)."""

from tests.browser_support import browser, browser_page  # noqa: F401  (pytest fixtures)
