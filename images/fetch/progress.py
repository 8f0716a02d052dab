"""Progress on stderr: a rich bar on a terminal, a plain line every few seconds in a pod log."""

from __future__ import annotations

import time

from rich.console import Console
from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TimeRemainingColumn


class Reporter:
    """One phase at a time (`start`), advanced in bytes; stdout stays free for the JSON result line."""

    def __init__(self, quiet: bool = False, interval_s: float = 5.0):
        self.console = Console(stderr=True, soft_wrap=True)
        self.quiet = quiet
        self.interactive = self.console.is_terminal and not quiet
        self.interval_s = interval_s
        self._bar: Progress | None = None
        self._task = None
        self._phase = ""
        self._total = 0
        self._done = 0
        self._last = 0.0

    def log(self, message: str) -> None:
        if not self.quiet:
            self.console.print(f"fetch: {message}", markup=False, highlight=False)

    def start(self, phase: str, total_bytes: int) -> None:
        self.finish()
        self._phase, self._total, self._done, self._last = phase, total_bytes, 0, time.monotonic()
        if self.interactive and total_bytes:
            self._bar = Progress(
                TextColumn("{task.description}"),
                BarColumn(),
                DownloadColumn(),
                TimeRemainingColumn(),
                console=self.console,
                transient=True,
            )
            self._bar.start()
            self._task = self._bar.add_task(phase, total=total_bytes)

    def advance(self, nbytes: int) -> None:
        self._done += nbytes
        if self._bar is not None:
            self._bar.update(self._task, advance=nbytes)
        elif not self.quiet and time.monotonic() - self._last >= self.interval_s:
            self._last = time.monotonic()
            pct = 100.0 * self._done / self._total if self._total else 100.0
            self.log(f"{self._phase}: {self._done / 1e6:.1f}/{self._total / 1e6:.1f} MB ({pct:.0f}%)")

    def finish(self) -> None:
        if self._bar is not None:
            self._bar.stop()
            self._bar = None
