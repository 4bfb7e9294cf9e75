"""The worker's counters and histograms: plain numbers, rendered for Prometheus by metrics.py."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

from core.metrics import LATENCY_BUCKETS, LOOP_LAG_BUCKETS, Buckets

BATCH_SIZE_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 4096)


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
    transactions: int = 0
    transactions_failed: int = 0
    transaction_seconds: Buckets = field(default_factory=lambda: Buckets(LATENCY_BUCKETS))
    in_flight: int = 0
    peak_in_flight: int = 0
    held: int = 0
    peak_held: int = 0
    batch_size: Buckets = field(default_factory=lambda: Buckets(BATCH_SIZE_BUCKETS))
    compute_seconds: Buckets = field(default_factory=lambda: Buckets(LATENCY_BUCKETS))
    end_to_end_seconds: Buckets = field(default_factory=lambda: Buckets(LATENCY_BUCKETS))
    loop_lag_seconds: Buckets = field(default_factory=lambda: Buckets(LOOP_LAG_BUCKETS))
    consumer_lag: dict[tuple[str, int], int] = field(default_factory=dict)
