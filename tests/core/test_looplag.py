"""Event-loop lag: a loop held by blocking work shows up as lag."""

from __future__ import annotations

import asyncio
import time

from core.looplag import LoopLagMonitor


async def test_a_blocked_loop_shows_as_a_late_sample() -> None:
    seen = asyncio.Event()
    monitor = LoopLagMonitor(interval=0.005,
                             on_sample=lambda lag: seen.set() if lag >= 0.05 else None)
    monitor.start()
    try:
        await asyncio.sleep(0)  # let the first sample be scheduled before the loop is held
        time.sleep(0.08)  # noqa: ASYNC251 - blocking on purpose: what the monitor exists to see
        await asyncio.wait_for(seen.wait(), 5)
        assert monitor.summary()["max_ms"] >= 50
    finally:
        await monitor.stop()
        await monitor.stop()  # twice is fine
