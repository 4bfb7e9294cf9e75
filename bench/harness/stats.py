"""Percentiles of samples, and the median/min/max of a figure over repeated runs."""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np


def percentiles(values: Sequence[float]) -> dict[str, float]:
    """p50, p99 and max (0 for no samples)."""
    if not values:
        return {"p50": 0.0, "p99": 0.0, "max": 0.0, "n": 0}
    arr = np.asarray(values, dtype=float)
    return {"p50": float(np.percentile(arr, 50)), "p99": float(np.percentile(arr, 99)),
            "max": float(arr.max()), "n": int(arr.size)}


@dataclass(frozen=True)
class Spread:
    """The median of a figure over runs, with its min and max."""

    median: float
    low: float
    high: float
    runs: int

    @classmethod
    def of(cls, values: Sequence[float]) -> Spread:
        """Summarise the per-run values (at least one)."""
        return cls(statistics.median(values), min(values), max(values), len(values))

    def as_dict(self) -> dict[str, float]:
        """JSON-ready."""
        return {"median": self.median, "min": self.low, "max": self.high, "runs": self.runs}


def histogram_quantile(buckets: Sequence[tuple[float, float]], q: float) -> float:
    """The upper bound of the bucket holding quantile ``q`` of a cumulative histogram
    (a conservative estimate: the true value is at most this)."""
    if not buckets or buckets[-1][1] <= 0:
        return 0.0
    target = q * buckets[-1][1]
    for bound, cumulative in buckets:
        if cumulative >= target:
            return bound
    return float("inf")


def bucket_delta(after: Sequence[tuple[float, float]],
                 before: Sequence[tuple[float, float]] | None) -> list[tuple[float, float]]:
    """The observations of a cumulative histogram between two scrapes."""
    if not before:
        return list(after)
    return [(b, a - p) for (b, a), (_, p) in zip(after, before, strict=True)]
