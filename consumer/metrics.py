"""Prometheus metrics of a worker, served on its own small HTTP port at ``/metrics``
(``core.metrics.MetricsServer``).

The collector reads ``WorkerStats`` at scrape time, so counting costs nothing extra on the hot
path.
"""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from consumer.stats import WorkerStats
from core.metrics import counter, gauge, histogram
from schemas.messages import RESULT_STATUSES


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
        for status in RESULT_STATUSES:
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
        yield counter("calcstream_worker_transactions",
                      "Transactions committed (exactly_once).", s.transactions, labels)
        yield counter("calcstream_worker_transactions_failed",
                      "Transactions that could not commit: fenced or refused (exactly_once); "
                      "their batches are read again from the committed offset.",
                      s.transactions_failed, labels)
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
        yield histogram("calcstream_worker_transaction_commit_seconds",
                        "Offset commit and EndTxn of one transaction (exactly_once).",
                        s.transaction_seconds, labels)
        yield histogram("calcstream_worker_event_loop_lag_seconds",
                        "How late a 10 ms timer on the worker's event loop fires.",
                        s.loop_lag_seconds, labels)
