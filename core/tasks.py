"""Cancelling a task and waiting for it to end: one idiom, one meaning.

``cancel_and_wait`` swallows the tasks' own outcome (their cancellation, or an error the caller
has already seen or does not need), but never the caller's: if the task calling it is itself
being cancelled while it waits, that cancellation propagates. ``being_cancelled`` tells the
two apart wherever a ``CancelledError`` may be someone else's.
"""

from __future__ import annotations

import asyncio
from typing import Any


def being_cancelled() -> bool:
    """The running task itself is being cancelled (a ``CancelledError`` it catches is then its
    own, not that of a task it awaited)."""
    current = asyncio.current_task()
    return current is not None and current.cancelling() > 0


async def cancel_and_wait(*tasks: asyncio.Future[Any] | None) -> None:
    """Cancel every task given (None is skipped) and wait until all have ended."""
    pending = [t for t in tasks if t is not None]
    for task in pending:
        task.cancel()
    for task in pending:
        try:
            await task
        except asyncio.CancelledError:
            if being_cancelled():
                raise  # the caller is being cancelled, not only the task
        except Exception:  # noqa: BLE001 - the task's own failure is its owner's business
            pass
