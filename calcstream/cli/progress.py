"""Progress bars on stderr with count, rate and ETA, redrawn from plain counters.

Hot loops only bump integers; a task on the event loop copies them into the bars ten times a
second, so a million sends cost a million additions, not a million redraws.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass
from types import TracebackType

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    Task,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.text import Text

from core.tasks import cancel_and_wait

_REDRAW_S = 0.1


class RateColumn(ProgressColumn):
    """Items per second."""

    def render(self, task: Task) -> Text:
        """``12,345/s`` (the average once finished)."""
        if task.finished and task.finished_time:
            speed: float | None = task.completed / task.finished_time
        else:
            speed = task.speed
        return Text("" if speed is None else f"{speed:,.0f}/s", style="progress.data.speed")


@dataclass
class _Bar:
    task: TaskID
    read: Callable[[], int]


class ProgressBoard:
    """Bars fed by counter functions; ``async with`` starts and stops the redrawing."""

    def __init__(self, enabled: bool = True, console: Console | None = None) -> None:
        self.enabled = enabled
        self._progress = Progress(
            TextColumn("{task.description:<8}"), BarColumn(), MofNCompleteColumn(), RateColumn(),
            TextColumn("elapsed"), TimeElapsedColumn(), TextColumn("eta"), TimeRemainingColumn(),
            console=console or Console(stderr=True), auto_refresh=False, disable=not enabled,
        )
        self._bars: list[_Bar] = []
        self._ticker: asyncio.Task[None] | None = None

    def add(self, description: str, total: int | None, read: Callable[[], int]) -> TaskID:
        """A bar that shows ``read()`` out of ``total``."""
        task = self._progress.add_task(description, total=total)
        self._bars.append(_Bar(task, read))
        return task

    def set_total(self, task: TaskID, total: int) -> None:
        """Correct a bar's total once it is known exactly."""
        self._progress.update(task, total=total)

    def redraw(self) -> None:
        """Copy the counters into the bars and draw them."""
        for bar in self._bars:
            self._progress.update(bar.task, completed=bar.read())
        self._progress.refresh()

    async def _tick(self) -> None:
        while True:
            await asyncio.sleep(_REDRAW_S)
            self.redraw()

    async def __aenter__(self) -> ProgressBoard:
        self._progress.start()
        if self.enabled:
            self._ticker = asyncio.create_task(self._tick())
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None,
                        exc: BaseException | None, tb: TracebackType | None) -> None:
        ticker, self._ticker = self._ticker, None
        await cancel_and_wait(ticker)
        self.redraw()
        self._progress.stop()
