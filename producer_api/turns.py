"""Turns for the steps that hold the API's event loop for milliseconds.

Reading a W2 body (2.1 MB of JSON: 7.3 ms) or writing a W2 result as JSON (2.3 ms; both in
bench/FINDINGS.md, finding 19) is one call that nothing interrupts. Under 64 clients several of
them become ready in the same pass of the event loop and run back to back, and a health check
or a small request that arrived meanwhile waits behind all of them. Here the large ones take
turns: at most one per pass, so that whatever else is ready runs between two of them. Small
steps, most requests' whole work, run at once, without touching the lock.

The work is the same and still on the loop: this orders it, it does not remove it. Ordering
costs something: W2 records then reach the broker one at a time rather than in bursts, and
the broker and the API spend more per result (bench/FINDINGS.md, finding 27).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")

LARGE_BYTES = 256 * 1024
"""A step over this many bytes of input takes its turn (a W1 body is 19 KB)."""


class Turns:
    """One large step per pass of the event loop."""

    def __init__(self, large_bytes: int = LARGE_BYTES) -> None:
        self.large_bytes = large_bytes
        self._lock = asyncio.Lock()

    async def run(self, size: int, step: Callable[[], T]) -> T:
        """``step()``, at once if ``size`` is small, else in its turn."""
        if size < self.large_bytes:
            return step()
        await self._lock.acquire()
        try:
            return step()
        finally:
            # Released in the next pass: the rest of this one (a health check among it) runs
            # before another large step, and this step's caller goes on at once.
            asyncio.get_running_loop().call_soon(self._lock.release)
