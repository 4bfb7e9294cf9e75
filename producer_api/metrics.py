"""Prometheus metrics of the API, served by the API itself at ``GET /metrics``.

As on the worker, the hot path only bumps plain numbers in ``ApiStats``; ``ApiCollector``
turns them, and the sizes of the store and the hub, into metric families when scraped.
"""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client import CollectorRegistry, ProcessCollector
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from core.metrics import counter, gauge, histogram
from producer_api.deps import Services
from producer_api.stats import ApiStats
from schemas.messages import RESULT_STATUSES


class ApiCollector(Collector):
    """Renders one API replica's stats (and its services' sizes, once started)."""

    def __init__(self, stats: ApiStats, state: object, api_id: str) -> None:
        self.stats = stats
        self.state = state
        self.api_id = api_id

    def collect(self) -> Iterator[Metric]:
        s, labels = self.stats, {"api": self.api_id}
        accepted = CounterMetricFamily(
            "calcstream_api_requests_accepted",
            "Calculation requests published and acknowledged, by way in (single: POST "
            "/v1/calculations, batch: items of POST /v1/calculations/batch, ws: WebSocket).",
            labels=["api", "via"])
        deduplicated = CounterMetricFamily(
            "calcstream_api_requests_deduplicated",
            "Re-posted client ids answered with their known state, not published again.",
            labels=["api", "via"])
        rejected = CounterMetricFamily(
            "calcstream_api_requests_rejected",
            "Calculation requests refused, by way in, HTTP status and error code (a batch "
            "body refused whole counts once).", labels=["api", "via", "status", "code"])
        for via, intake in s.intakes().items():
            accepted.add_metric([self.api_id, via], intake.accepted)
            deduplicated.add_metric([self.api_id, via], intake.deduplicated)
            for (status, code), n in sorted(intake.rejected.items()):
                rejected.add_metric([self.api_id, via, str(status), code], n)
        yield from (accepted, deduplicated, rejected)
        results = CounterMetricFamily("calcstream_api_results",
                                      "New results read from the reply topic, by status.",
                                      labels=["api", "status"])
        for name in sorted({*RESULT_STATUSES, *s.results}):
            results.add_metric([self.api_id, name], s.results.get(name, 0))
        yield results
        yield histogram("calcstream_api_end_to_end_seconds",
                        "From the request record's broker timestamp (enqueued_at) to its result "
                        "being read by this API (results of its own lifetime only).",
                        s.end_to_end_seconds, labels)
        yield histogram("calcstream_api_publish_seconds",
                        "From send to the broker's ack, for single and WebSocket submits.",
                        s.publish_seconds, labels)
        yield histogram("calcstream_api_event_loop_lag_seconds",
                        "How late a 10 ms timer on the API's event loop fires.",
                        s.loop_lag_seconds, labels)
        refused = CounterMetricFamily(
            "calcstream_api_refused",
            "Requests and WebSocket handshakes turned away before being read, by endpoint "
            "(submit, batch, result, ws), status and code: 503 overloaded (shed), 403 "
            "origin_not_allowed. Refused submits also count in requests_rejected.",
            labels=["api", "endpoint", "status", "code"])
        for (endpoint, status, code), n in sorted(s.refused.items()):
            refused.add_metric([self.api_id, endpoint, str(status), code], n)
        yield refused
        yield gauge("calcstream_api_requests_in_progress",
                    "HTTP requests on /v1/calculations being served (max_concurrent_requests "
                    "bounds it).", s.requests_in_progress, labels)
        yield gauge("calcstream_api_websocket_connections",
                    "Open WebSocket connections, handshakes in progress included "
                    "(ws_max_connections bounds it).", s.ws_connections, labels)
        yield counter("calcstream_api_websocket_connections_opened",
                      "WebSocket connections accepted.", s.ws_opened, labels)
        yield counter("calcstream_api_websocket_dropped",
                      "Results of the 'all' stream dropped for slow WebSocket readers.",
                      s.ws_dropped, labels)
        services: Services | None = getattr(self.state, "services", None)
        if services is not None:
            yield from self._sizes(services, labels)

    @staticmethod
    def _sizes(services: Services, labels: dict[str, str]) -> Iterator[Metric]:
        store, reader = services.store, services.reader
        size = GaugeMetricFamily("calcstream_api_result_store",
                                 "What the result store remembers: ids and result bytes.",
                                 labels=["api", "unit"])
        size.add_metric([*labels.values(), "ids"], len(store))
        size.add_metric([*labels.values(), "bytes"], store.result_bytes)
        yield size
        yield gauge("calcstream_api_result_waiters",
                    "Requests waiting for a result (?wait=).", store.waiting, labels)
        yield gauge("calcstream_api_websocket_streams",
                    "WebSocket connections subscribed to every result.",
                    services.hub.streaming, labels)
        yield counter("calcstream_api_result_records",
                      "Records read from the reply topic (new, duplicate, malformed, or older than "
                      "the recovery window and skipped).",
                      reader.records, labels)
        yield counter("calcstream_api_result_duplicates",
                      "Results for an id that already had one (at-least-once redeliveries).",
                      store.duplicates, labels)
        yield counter("calcstream_api_result_malformed",
                      "Reply-topic records that were not a readable result.",
                      reader.malformed, labels)
        yield gauge("calcstream_api_results_caught_up",
                    "1 once the result reader has caught up with the reply topic.",
                    float(reader.caught_up.is_set()), labels)
        partitions = GaugeMetricFamily(
            "calcstream_api_reply_partitions",
            "Reply-topic partitions this replica reads: its share of the reply group "
            "(owned), and others' read while someone here asks about their ids (borrowed).",
            labels=["api", "role"])
        partitions.add_metric([*labels.values(), "owned"], len(reader.owned))
        partitions.add_metric([*labels.values(), "borrowed"], len(reader.borrowed))
        yield partitions
        forwarder = services.forwarder
        if forwarder is not None:
            forwarded = CounterMetricFamily(
                "calcstream_api_forwarded",
                "GETs of ids on another replica's reply partition asked of that replica "
                "(answered: its answer relayed; failed: unreachable or a server error, so "
                "this replica read the partition itself).", labels=["api", "outcome"])
            forwarded.add_metric([*labels.values(), "answered"], forwarder.forwarded)
            forwarded.add_metric([*labels.values(), "failed"], forwarder.failed)
            yield forwarded


def registry(stats: ApiStats, state: object, api_id: str) -> CollectorRegistry:
    """A registry with the API's collector and the process' own metrics (CPU, memory, fds)."""
    reg = CollectorRegistry()
    reg.register(ApiCollector(stats, state, api_id))
    ProcessCollector(registry=reg)
    return reg
