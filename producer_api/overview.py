"""``GET /v1/stats``: the live figures the dashboard polls, as one small JSON document.

Rates and latency percentiles are over a sliding window (``window`` seconds): each call keeps
a snapshot of the counters (at most one per ``min_interval``) and compares the newest figures
with the oldest snapshot still inside the window, so any number of pollers see the same
numbers and nothing runs in the background. The first call has no window yet and answers
null rates and percentiles since start-up.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from producer_api.deps import Services
from producer_api.stats import ApiStats, quantile
from producer_api.workers import WorkerScraper


@dataclass(frozen=True, slots=True)
class _Snapshot:
    at: float
    results: int
    accepted: int
    end_to_end: list[int]


class Overview:
    """Builds the stats document from the counters, the services and the workers' metrics."""

    def __init__(self, stats: ApiStats, scraper: WorkerScraper, window: float = 5.0,
                 min_interval: float = 0.25, clock: Callable[[], float] = time.monotonic) -> None:
        self.stats = stats
        self.scraper = scraper
        self.window = window
        self.min_interval = min_interval
        self.clock = clock
        self.started = clock()
        self._history: deque[_Snapshot] = deque()

    async def document(self, services: Services | None) -> dict[str, Any]:
        """The ``Stats`` document (see ``models.Stats``)."""
        s = self.stats
        now = self._snapshot()
        before = self._remember(now)
        elapsed = 0.0 if before is None else now.at - before.at
        workers = await self.scraper.figures()
        api: dict[str, Any] = {
            "uptime_s": now.at - self.started,
            "accepted": s.accepted,
            "rejected": s.rejected,
            "rejected_by_code": _by_code(s),
            "results": dict(s.results),
            "results_total": now.results,
            "results_per_s": _per_s(now.results - before.results, elapsed) if before else None,
            "accepted_per_s": _per_s(now.accepted - before.accepted, elapsed) if before else None,
            "end_to_end_ms": self._percentiles(now, before),
            "loop_lag_ms": None,
            "result_store": None,
            "websocket": {"connections": s.ws_connections, "dropped": s.ws_dropped},
            "caught_up": False,
        }
        if services is not None:
            store = services.store
            api["loop_lag_ms"] = services.loop_lag.summary()
            api["result_store"] = {"ids": len(store), "bytes": store.result_bytes,
                                   "waiters": store.waiting}
            api["caught_up"] = services.reader.caught_up.is_set()
            api["id"] = services.settings.api_id
        up = [w for w in workers if w["up"]]
        return {
            "at": time.time(),
            "window_s": elapsed if before else None,
            "api": api,
            "workers": workers,
            "consumer_lag": sum(w["consumer_lag"] for w in up) if up else None,
        }

    def _snapshot(self) -> _Snapshot:
        s = self.stats
        return _Snapshot(self.clock(), sum(s.results.values()), s.accepted,
                         [n for _, n in s.end_to_end_seconds.cumulative()])

    def _remember(self, now: _Snapshot) -> _Snapshot | None:
        """Store ``now`` (unless a snapshot was just taken); the window's oldest snapshot."""
        history = self._history
        while len(history) > 1 and now.at - history[1].at >= self.window:
            history.popleft()
        before = history[0] if history else None
        if not history or now.at - history[-1].at >= self.min_interval:
            history.append(now)
        return before

    def _percentiles(self, now: _Snapshot, before: _Snapshot | None) -> dict[str, float | None]:
        counts = now.end_to_end
        if before is not None:
            counts = [n - b for n, b in zip(counts, before.end_to_end, strict=True)]
        bounds = self.stats.end_to_end_seconds.bounds
        out: dict[str, float | None] = {}
        for name, q in (("p50", 0.5), ("p95", 0.95), ("p99", 0.99)):
            value = quantile(bounds, counts, q)
            out[name] = None if value is None else value * 1000
        return out


def _per_s(delta: int, elapsed: float) -> float | None:
    return delta / elapsed if elapsed > 0 else None


def _by_code(stats: ApiStats) -> dict[str, int]:
    out: dict[str, int] = {}
    for intake in stats.intakes().values():
        for (_, code), n in intake.rejected.items():
            out[code] = out.get(code, 0) + n
    return out
