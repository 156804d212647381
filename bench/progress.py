"""The one progress layout that runs and suites share, on stderr: a rich bar on a terminal, plain lines
elsewhere (a log file, CI), at most one every OPTBENCH_PROGRESS_INTERVAL seconds and one at the end."""

from __future__ import annotations

import sys
import time
from typing import Any

from bench import settings


def progress_bar(title: str, *fields: str) -> Any:
    """A started-later rich Progress: title, bar, done/total, the given text fields, elapsed, ETA. When
    stderr is not a terminal (rich would draw nothing until the end), PlainProgress with the same calls."""
    if not sys.stderr.isatty():
        return PlainProgress(title, fields)
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    return Progress(
        TextColumn(f"[bold]{title}"),
        BarColumn(),
        MofNCompleteColumn(),
        *(TextColumn(f) for f in fields),
        TimeElapsedColumn(),
        TextColumn("eta"),
        TimeRemainingColumn(),
        console=Console(stderr=True),
        refresh_per_second=4,
        transient=True,
    )


class PlainConsole:
    def print(self, text: str) -> None:
        print(text, file=sys.stderr, flush=True)


class PlainProgress:
    """`title: done/total, fields, elapsed, eta` lines, for a stderr that is not a terminal."""

    def __init__(self, title: str, fields: tuple[str, ...], interval: float | None = None):
        self.title, self.fields = title, fields
        self.interval = settings.get("OPTBENCH_PROGRESS_INTERVAL") if interval is None else interval
        self.console = PlainConsole()
        self.tasks: dict[int, dict[str, Any]] = {}
        self.started = self.last = 0.0

    def add_task(self, description: str, total: int, completed: int = 0, **fields: Any) -> int:
        """`completed`: done before this command (a resumed suite); the ETA is paced by what is done after."""
        self.tasks[len(self.tasks)] = {"total": total, "completed": completed, "start": completed, **fields}
        return len(self.tasks) - 1

    def start(self) -> None:
        self.started = self.last = time.monotonic()

    def update(self, task: int, completed: int | None = None, **fields: Any) -> None:
        state = self.tasks[task]
        if completed is not None:
            state["completed"] = completed
        state.update(fields)
        now = time.monotonic()
        if now - self.last >= self.interval:
            self.last = now
            self.console.print(self.line(task))

    def line(self, task: int) -> str:
        state = self.tasks[task]
        done, total, now_done = state["completed"], state["total"], state["completed"] - state["start"]
        elapsed = time.monotonic() - self.started
        eta = f"{elapsed / now_done * max(0, total - done):.0f} s" if now_done > 0 and total else "-"
        from types import SimpleNamespace

        shown = [f.format(task=SimpleNamespace(fields=state)) for f in self.fields]
        return f"{self.title}: {done}/{total}, " + ", ".join([*shown, f"{elapsed:.0f} s elapsed", f"eta {eta}"])

    def stop(self) -> None:
        for task in self.tasks:
            self.console.print(self.line(task))
