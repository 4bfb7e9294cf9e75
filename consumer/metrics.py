"""Prometheus metrics of a worker, served on its own small HTTP port at ``/metrics``.

The collector reads ``WorkerStats`` at scrape time, so counting costs nothing extra on the hot
path. The server is a few lines of asyncio: it runs on the worker's loop and never blocks it.
The family helpers (``counter``, ``gauge``, ``histogram``) are shared with the API's collector.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterator, Mapping

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

from consumer.stats import Buckets, WorkerStats

logger = logging.getLogger(__name__)

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


class WorkerCollector(Collector):
    """Renders one worker's stats as Prometheus metric families."""

    def __init__(self, stats: WorkerStats, worker_id: str) -> None:
        self.stats = stats
        self.worker_id = worker_id

    def collect(self) -> Iterator[Metric]:
        s, w = self.stats, self.worker_id
        labels = {"worker": w}
        yield counter("calcstream_worker_records", "Request records consumed and handled.",
                      s.records, labels)
        yield counter("calcstream_worker_batches", "Batches computed.", s.batches, labels)
        results = CounterMetricFamily("calcstream_worker_results", "Results published by status.",
                                      labels=["worker", "status"])
        for status in ("ok", "error", "expired"):
            results.add_metric([w, status], s.results.get(status, 0))
        yield results
        yield counter("calcstream_worker_dead_letters", "Records sent to the dead-letter topic.",
                      s.dead_letters, labels)
        yield counter("calcstream_worker_cache_hits", "Results answered from the result cache.",
                      s.cache_hits, labels)
        yield counter("calcstream_worker_commit_failures", "Offset commits refused or failed.",
                      s.commit_failures, labels)
        yield counter("calcstream_worker_publish_retries", "Batch publishes retried.",
                      s.publish_retries, labels)
        yield gauge("calcstream_worker_batches_in_flight", "Batches computing or publishing now.",
                    s.in_flight, labels)
        yield gauge("calcstream_worker_records_held",
                    "Records fetched and not yet handled (queued for a batch or in one in "
                    "flight); at most (max_in_flight + 1) x max_batch_size.", s.held, labels)
        lag = GaugeMetricFamily("calcstream_worker_consumer_lag",
                                "Records behind the partition's high watermark.",
                                labels=["worker", "topic", "partition"])
        for (topic, partition), value in sorted(s.consumer_lag.items()):
            lag.add_metric([w, topic, str(partition)], value)
        yield lag
        yield histogram("calcstream_worker_batch_size", "Requests per batch.", s.batch_size,
                        labels)
        yield histogram("calcstream_worker_compute_seconds",
                        "Wall time of a batch's compute step (in its thread).",
                        s.compute_seconds, labels)
        yield histogram("calcstream_worker_end_to_end_seconds",
                        "From the request record's broker timestamp to its result's ack.",
                        s.end_to_end_seconds, labels)
        yield histogram("calcstream_worker_event_loop_lag_seconds",
                        "How late a 10 ms timer on the worker's event loop fires.",
                        s.loop_lag_seconds, labels)


def counter(name: str, doc: str, value: float, labels: Mapping[str, str]) -> Metric:
    """A counter family with one sample."""
    family = CounterMetricFamily(name, doc, labels=list(labels))
    family.add_metric(list(labels.values()), value)
    return family


def gauge(name: str, doc: str, value: float, labels: Mapping[str, str]) -> Metric:
    """A gauge family with one sample."""
    family = GaugeMetricFamily(name, doc, labels=list(labels))
    family.add_metric(list(labels.values()), value)
    return family


def histogram(name: str, doc: str, buckets: Buckets, labels: Mapping[str, str]) -> Metric:
    """A histogram family with one series, from ``Buckets``."""
    family = HistogramMetricFamily(name, doc, labels=list(labels))
    family.add_metric(list(labels.values()), buckets.cumulative(), sum_value=buckets.total)
    return family


class MetricsServer:
    """``GET /metrics`` over plain HTTP/1.1 on the running loop."""

    def __init__(self, registry: CollectorRegistry, host: str, port: int) -> None:
        self.registry = registry
        self.host = host
        self.port = port
        self._server: asyncio.Server | None = None

    async def start(self) -> None:
        """Listen; with port 0 the chosen port is stored in ``self.port``."""
        self._server = await asyncio.start_server(self._handle, self.host, self.port)
        self.port = self._server.sockets[0].getsockname()[1]
        logger.info("metrics on http://%s:%d/metrics", self.host, self.port)

    async def stop(self) -> None:
        """Stop listening; safe to call twice."""
        server, self._server = self._server, None
        if server is not None:
            server.close()
            await server.wait_closed()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            request_line = await asyncio.wait_for(reader.readline(), 5)
            while (await asyncio.wait_for(reader.readline(), 5)) not in (b"\r\n", b"\n", b""):
                pass
            parts = request_line.split()
            if len(parts) >= 2 and parts[0] == b"GET" and parts[1].split(b"?")[0] == b"/metrics":
                status, body, ctype = "200 OK", generate_latest(self.registry), CONTENT_TYPE
            else:
                status, body, ctype = "404 Not Found", b"only GET /metrics here\n", "text/plain"
            writer.write(
                f"HTTP/1.1 {status}\r\nContent-Type: {ctype}\r\nContent-Length: {len(body)}\r\n"
                "Connection: close\r\n\r\n".encode() + body
            )
            await writer.drain()
        except (TimeoutError, ConnectionError):
            pass
        finally:
            writer.close()
