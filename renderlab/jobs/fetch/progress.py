"""Progress on stderr: a rich bar on a terminal, a plain line every few seconds in a pod log."""

from __future__ import annotations

import time
from typing import Any

from rich.console import Console
from rich.progress import (
    BarColumn,
    DownloadColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeRemainingColumn,
)


class Reporter:
    """One phase at a time (`start`), counted in bytes or files; stdout stays free for the JSON line."""

    def __init__(self, quiet: bool = False, interval_s: float = 5.0):
        self.console = Console(stderr=True, soft_wrap=True)
        self.quiet = quiet
        self.interactive = self.console.is_terminal and not quiet
        self.interval_s = interval_s
        self._bar: Progress | None = None
        self._task: Any = None
        self._phase = ""
        self._unit = "bytes"
        self._total = 0
        self._done = 0
        self._last = 0.0

    def log(self, message: str) -> None:
        if not self.quiet:
            self.console.print(f"fetch: {message}", markup=False, highlight=False)

    def start(self, phase: str, total: int, unit: str = "bytes") -> None:
        self.finish()
        self._phase, self._unit, self._total, self._done = phase, unit, total, 0
        self._last = time.monotonic()
        if self.interactive and total:
            amount = DownloadColumn() if unit == "bytes" else MofNCompleteColumn()
            self._bar = Progress(
                TextColumn("{task.description}"),
                BarColumn(),
                amount,
                TimeRemainingColumn(),
                console=self.console,
                transient=True,
            )
            self._bar.start()
            self._task = self._bar.add_task(phase, total=total)

    def advance(self, amount: int) -> None:
        self.update(self._done + amount)

    def update(self, position: int) -> None:
        self._done = position
        if self._bar is not None:
            self._bar.update(self._task, completed=position)
        elif not self.quiet and time.monotonic() - self._last >= self.interval_s:
            self._last = time.monotonic()
            self.log(f"{self._phase}: {self._describe()}")

    def _describe(self) -> str:
        pct = 100.0 * self._done / self._total if self._total else 100.0
        if self._unit == "bytes":
            return f"{self._done / 1e6:.1f}/{self._total / 1e6:.1f} MB ({pct:.0f}%)"
        return f"{self._done}/{self._total} {self._unit} ({pct:.0f}%)"

    def finish(self) -> None:
        if self._bar is not None:
            self._bar.stop()
            self._bar = None


def p4_progress(p4_module: Any, reporter: Reporter) -> Any:
    """A p4python `Progress` handler that feeds `reporter` (p4.progress = ...) during long syncs."""
    units = {1: "%", 2: "files", 3: "KB", 4: "MB"}

    class _ToReporter(p4_module.Progress):
        def init(self, type: int) -> None:  # noqa: A002 - p4python's signature
            self.type = type

        def setDescription(self, description: str, unit: int) -> None:  # noqa: N802 - p4python's API
            self.description, self.unit = description, units.get(unit, "units")

        def setTotal(self, total: int) -> None:  # noqa: N802 - p4python's API
            reporter.start(getattr(self, "description", "sync"), int(total), getattr(self, "unit", "files"))

        def update(self, position: int) -> None:
            reporter.update(int(position))

        def done(self, fail: int) -> None:
            reporter.finish()

    return _ToReporter()
