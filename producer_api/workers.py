"""Worker figures for the dashboard, scraped from the workers' own ``/metrics`` endpoints.

The API knows nothing about workers except the URLs in ``worker_metrics_urls``. It scrapes
them on demand (``GET /v1/stats``), at most once per ``min_interval`` however many dashboards
poll, over plain asyncio streams (the worker's metrics server speaks HTTP/1.1 with
``Connection: close``). Rates and windowed percentiles come from the difference between two
scrapes, as Prometheus' ``rate()`` and ``histogram_quantile()`` would compute them.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import defaultdict
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from prometheus_client.parser import text_string_to_metric_families

from producer_api.stats import quantile

logger = logging.getLogger(__name__)

_MAX_BYTES = 4 * 1024 * 1024
_PREFIX = "calcstream_worker_"


class ScrapeError(Exception):
    """A worker's metrics could not be read."""


@dataclass(frozen=True, slots=True)
class Sample:
    """One scrape of one worker: every sample summed over labels other than ``le``."""

    at: float
    worker: str | None
    values: dict[str, float]
    buckets: dict[str, list[tuple[float, float]]]

    def histogram(self, name: str) -> tuple[list[float], list[float]]:
        """(bounds, cumulative counts) of a histogram, +Inf last."""
        pairs = sorted(self.buckets.get(name, []))
        return [b for b, _ in pairs], [c for _, c in pairs]


def parse(text: str, at: float) -> Sample:
    """A worker's Prometheus text as a ``Sample``."""
    values: dict[str, float] = defaultdict(float)
    buckets: dict[str, dict[float, float]] = defaultdict(lambda: defaultdict(float))
    worker = None
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            worker = s.labels.get("worker", worker)
            if s.name.endswith("_bucket"):
                buckets[s.name[:-len("_bucket")]][float(s.labels["le"])] += s.value
            else:
                values[s.name] += s.value
    return Sample(at, worker, dict(values),
                  {name: sorted(b.items()) for name, b in buckets.items()})


def figures(url: str, now: Sample, before: Sample | None) -> dict[str, Any]:
    """The dashboard's figures for one worker: totals now, rates and percentiles since before."""
    v = now.values
    doc: dict[str, Any] = {
        "url": url, "up": True, "error": None, "worker": now.worker,
        "records": int(v.get(_PREFIX + "records_total", 0)),
        "results": int(v.get(_PREFIX + "results_total", 0)),
        "dead_letters": int(v.get(_PREFIX + "dead_letters_total", 0)),
        "in_flight": int(v.get(_PREFIX + "batches_in_flight", 0)),
        "consumer_lag": int(v.get(_PREFIX + "consumer_lag", 0)),
        "records_per_s": None, "batch_size_mean": None, "compute_p99_ms": None,
        "end_to_end_p99_ms": None, "loop_lag_p99_ms": None,
    }
    if before is None or now.at <= before.at:
        return doc
    elapsed = now.at - before.at
    b = before.values
    records = v.get(_PREFIX + "records_total", 0) - b.get(_PREFIX + "records_total", 0)
    doc["records_per_s"] = max(0.0, records) / elapsed
    batches = (v.get(_PREFIX + "batch_size_count", 0)
               - b.get(_PREFIX + "batch_size_count", 0))
    if batches > 0:
        doc["batch_size_mean"] = (v.get(_PREFIX + "batch_size_sum", 0)
                                  - b.get(_PREFIX + "batch_size_sum", 0)) / batches
    for key, name in (("compute_p99_ms", "compute_seconds"),
                      ("end_to_end_p99_ms", "end_to_end_seconds"),
                      ("loop_lag_p99_ms", "event_loop_lag_seconds")):
        p99 = _windowed_quantile(now, before, _PREFIX + name, 0.99)
        doc[key] = None if p99 is None else p99 * 1000
    return doc


def down(url: str, error: str) -> dict[str, Any]:
    """The figures of a worker that could not be scraped."""
    return {"url": url, "up": False, "error": error, "worker": None, "records": 0, "results": 0,
            "dead_letters": 0, "in_flight": 0, "consumer_lag": 0, "records_per_s": None,
            "batch_size_mean": None, "compute_p99_ms": None, "end_to_end_p99_ms": None,
            "loop_lag_p99_ms": None}


def _windowed_quantile(now: Sample, before: Sample, name: str, q: float) -> float | None:
    bounds, counts = now.histogram(name)
    old_bounds, old_counts = before.histogram(name)
    if old_bounds == bounds:
        counts = [c - o for c, o in zip(counts, old_counts, strict=True)]
    elif old_bounds:
        return None  # the worker restarted with other buckets: no window
    return quantile(bounds[:-1], counts, q)


class WorkerScraper:
    """Scrapes every configured worker concurrently; caches the answer for ``min_interval``."""

    def __init__(self, urls: list[str], timeout: float = 1.0, min_interval: float = 0.5,
                 window: float = 5.0) -> None:
        self.urls = urls
        self.timeout = timeout
        self.min_interval = min_interval
        self.window = window
        self._history: dict[str, list[Sample]] = {url: [] for url in urls}
        self._figures: list[dict[str, Any]] = []
        self._scraped_at = -min_interval
        self._lock = asyncio.Lock()

    async def figures(self) -> list[dict[str, Any]]:
        """Each worker's figures (scraping them unless a scrape just happened)."""
        if not self.urls:
            return []
        async with self._lock:
            if time.monotonic() - self._scraped_at >= self.min_interval:
                self._figures = list(await asyncio.gather(*map(self._scrape, self.urls)))
                self._scraped_at = time.monotonic()
        return self._figures

    async def _scrape(self, url: str) -> dict[str, Any]:
        try:
            text = await fetch(url, self.timeout)
            sample = parse(text, time.monotonic())
        except (ScrapeError, OSError, TimeoutError, ValueError) as exc:
            logger.debug("scraping %s failed: %s", url, exc)
            self._history[url] = []
            return down(url, str(exc) or type(exc).__name__)
        history = self._history[url]
        history.append(sample)
        while len(history) > 2 and sample.at - history[1].at >= self.window:
            history.pop(0)
        return figures(url, sample, history[0] if len(history) > 1 else None)


async def fetch(url: str, timeout: float) -> str:
    """``GET url`` over plain HTTP/1.1; the body as text, or ``ScrapeError``."""
    parts = urlsplit(url)
    if parts.scheme != "http" or not parts.hostname:
        raise ScrapeError(f"not a plain http:// URL: {url!r}")
    target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    async with asyncio.timeout(timeout):
        reader, writer = await asyncio.open_connection(parts.hostname, parts.port or 80)
        try:
            writer.write(f"GET {target} HTTP/1.1\r\nHost: {parts.netloc}\r\n"
                         "Accept: text/plain\r\nConnection: close\r\n\r\n".encode())
            raw = await reader.read(_MAX_BYTES + 65536)
            while not reader.at_eof() and len(raw) <= _MAX_BYTES:
                raw += await reader.read(65536)
        finally:
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()
    head, sep, body = raw.partition(b"\r\n\r\n")
    status_line, *header_lines = head.decode("latin-1").split("\r\n")
    status = status_line.split()[1:2]
    if not sep or len(raw) > _MAX_BYTES or status != ["200"]:
        raise ScrapeError(f"{url} answered {status_line[:80]!r}")
    headers = {k.strip().lower(): v.strip() for k, _, v in
               (line.partition(":") for line in header_lines)}
    if headers.get("transfer-encoding", "").lower() == "chunked":
        body = _dechunk(body)
    return body.decode()


def _dechunk(body: bytes) -> bytes:
    out, pos = bytearray(), 0
    while True:
        end = body.index(b"\r\n", pos)
        size = int(body[pos:end].split(b";")[0], 16)
        if size == 0:
            return bytes(out)
        out += body[end + 2:end + 2 + size]
        pos = end + 2 + size + 2
