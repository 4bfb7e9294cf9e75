"""The worker's counters and histograms: plain numbers, rendered for Prometheus by metrics.py."""

from __future__ import annotations

import bisect
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
LOOP_LAG_BUCKETS = (0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0)
BATCH_SIZE_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 4096)


@dataclass
class Buckets:
    """A cumulative-style histogram: counts per upper bound, plus sum and count."""

    bounds: tuple[float, ...]
    counts: list[int] = field(init=False)
    total: float = 0.0
    count: int = 0

    def __post_init__(self) -> None:
        self.counts = [0] * (len(self.bounds) + 1)

    def observe(self, value: float) -> None:
        """Add one observation."""
        self.counts[bisect.bisect_left(self.bounds, value)] += 1
        self.total += value
        self.count += 1

    def observe_many(self, values: Iterable[float]) -> None:
        """Add many observations."""
        for v in values:
            self.observe(v)

    def cumulative(self) -> list[tuple[str, int]]:
        """(le, cumulative count) pairs ending with +Inf, as Prometheus exposes them."""
        out, running = [], 0
        for bound, n in zip((*map(str, self.bounds), "+Inf"), self.counts, strict=True):
            running += n
            out.append((bound, running))
        return out


@dataclass
class WorkerStats:
    """Everything the worker counts since it started."""

    records: int = 0
    batches: int = 0
    dead_letters: int = 0
    cache_hits: int = 0
    results: Counter[str] = field(default_factory=Counter)
    commit_failures: int = 0
    publish_retries: int = 0
    in_flight: int = 0
    peak_in_flight: int = 0
    held: int = 0
    peak_held: int = 0
    batch_size: Buckets = field(default_factory=lambda: Buckets(BATCH_SIZE_BUCKETS))
    compute_seconds: Buckets = field(default_factory=lambda: Buckets(LATENCY_BUCKETS))
    end_to_end_seconds: Buckets = field(default_factory=lambda: Buckets(LATENCY_BUCKETS))
    loop_lag_seconds: Buckets = field(default_factory=lambda: Buckets(LOOP_LAG_BUCKETS))
    consumer_lag: dict[tuple[str, int], int] = field(default_factory=dict)
