"""Event-loop lag: how late a periodic timer wakes up compared with when it was due."""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable

import numpy as np

from core.tasks import cancel_and_wait


class LoopLagMonitor:
    """Samples the running loop's lag every ``interval`` seconds into a bounded window."""

    def __init__(
        self,
        interval: float = 0.01,
        window: int = 6000,
        on_sample: Callable[[float], None] | None = None,
    ) -> None:
        self.interval = interval
        self.samples: deque[float] = deque(maxlen=window)
        self._on_sample = on_sample
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        """Begin sampling on the running loop."""
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._probe(), name="loop-lag")

    async def stop(self) -> None:
        """Stop sampling; safe to call twice."""
        task, self._task = self._task, None
        await cancel_and_wait(task)

    async def _probe(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            due = loop.time() + self.interval
            await asyncio.sleep(self.interval)
            lag = max(0.0, loop.time() - due)
            self.samples.append(lag)
            if self._on_sample is not None:
                self._on_sample(lag)

    def percentile(self, q: float) -> float:
        """The q-th percentile lag in seconds over the window (0 when empty)."""
        if not self.samples:
            return 0.0
        return float(np.percentile(np.fromiter(self.samples, dtype=float), q))

    def summary(self) -> dict[str, float]:
        """p50, p99 and max lag in milliseconds."""
        return {
            "p50_ms": self.percentile(50) * 1000,
            "p99_ms": self.percentile(99) * 1000,
            "max_ms": (max(self.samples) if self.samples else 0.0) * 1000,
            "samples": float(len(self.samples)),
        }
