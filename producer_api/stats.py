"""The API's counters and histograms: plain numbers, rendered for Prometheus by metrics.py.

Everything here is updated on the hot path, so it is attribute increments and ``Buckets``
observations only; sizes that already live elsewhere (the result store, the hub) are read at
scrape time instead of being counted twice.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field

from core.metrics import LATENCY_BUCKETS, LOOP_LAG_BUCKETS, Buckets
from producer_api.errors import ApiError

# Finer than the worker's latency buckets between 1 and 100 ms, where a local stack lives, so
# that percentiles interpolated from them (/v1/stats, histogram_quantile) stay close.
END_TO_END_BUCKETS = (0.001, 0.002, 0.003, 0.005, 0.0075, 0.01, 0.015, 0.02, 0.03, 0.05, 0.075,
                      0.1, 0.15, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
VIAS = ("single", "batch", "ws")


class Intake:
    """What became of the calculation requests that came in one way (single, batch, ws)."""

    __slots__ = ("accepted", "deduplicated", "rejected")

    def __init__(self) -> None:
        self.accepted = 0
        self.deduplicated = 0
        self.rejected: Counter[tuple[int, str]] = Counter()

    def reject(self, exc: ApiError) -> None:
        """Count a rejection by HTTP status and error code."""
        self.rejected[(exc.status, exc.code)] += 1


@dataclass
class ApiStats:
    """Everything the API counts since it started.

    ``single`` is ``POST /v1/calculations``; ``batch`` counts the items of
    ``POST /v1/calculations/batch`` (a body refused whole counts once); ``ws`` is WebSocket
    submits. ``accepted`` means published and acknowledged, ``deduplicated`` a known client id
    answered without publishing again. ``refused`` counts what the door (``admission``) turned
    away, by endpoint, status and code; ``ws_connections`` and ``requests_in_progress`` are
    what it let in and is still serving.
    """

    single: Intake = field(default_factory=Intake)
    batch: Intake = field(default_factory=Intake)
    ws: Intake = field(default_factory=Intake)
    results: Counter[str] = field(default_factory=Counter)
    end_to_end_seconds: Buckets = field(default_factory=lambda: Buckets(END_TO_END_BUCKETS))
    publish_seconds: Buckets = field(default_factory=lambda: Buckets(LATENCY_BUCKETS))
    loop_lag_seconds: Buckets = field(default_factory=lambda: Buckets(LOOP_LAG_BUCKETS))
    ws_connections: int = 0
    ws_opened: int = 0
    ws_dropped: int = 0
    requests_in_progress: int = 0
    refused: Counter[tuple[str, int, str]] = field(default_factory=Counter)

    def intakes(self) -> dict[str, Intake]:
        """The three ways in, by label."""
        return {"single": self.single, "batch": self.batch, "ws": self.ws}

    @property
    def accepted(self) -> int:
        """Requests accepted in every way."""
        return self.single.accepted + self.batch.accepted + self.ws.accepted

    @property
    def rejected(self) -> int:
        """Requests rejected in every way."""
        return sum(sum(i.rejected.values()) for i in self.intakes().values())


def quantile(bounds: Sequence[float], cumulative: Sequence[float], q: float) -> float | None:
    """The q-quantile (0..1) of a histogram, interpolated as Prometheus' histogram_quantile.

    ``cumulative`` holds the count at or below each bound, then the total (+Inf). None when the
    histogram is empty; the highest finite bound when the quantile falls past it.
    """
    total = cumulative[-1] if cumulative else 0
    if total <= 0:
        return None
    rank = q * total
    below, lower = 0.0, 0.0
    for bound, count in zip(bounds, cumulative, strict=False):
        if count >= rank:
            if count == below:
                return bound
            return lower + (bound - lower) * (rank - below) / (count - below)
        below, lower = count, bound
    return bounds[-1] if bounds else None
