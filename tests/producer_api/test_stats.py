"""The API's counting on its own: quantiles, windows, worker figures, drops, masking (no broker)."""

from __future__ import annotations

import orjson
from prometheus_client import CollectorRegistry, generate_latest

from consumer.metrics import WorkerCollector
from consumer.stats import WorkerStats
from producer_api.hub import Hub, Subscriber
from producer_api.overview import Overview
from producer_api.stats import ApiStats, quantile
from producer_api.store import ResultStore
from producer_api.workers import WorkerScraper, figures, parse


def test_quantile_interpolates_inside_a_bucket_like_prometheus() -> None:
    bounds = (1.0, 2.0, 4.0)
    # 10 at or below 1, 10 more in (1, 2], none above: cumulative then +Inf.
    assert quantile(bounds, [10, 20, 20, 20], 0.5) == 1.0
    assert quantile(bounds, [10, 20, 20, 20], 0.75) == 1.5
    assert quantile(bounds, [0, 0, 0, 0], 0.5) is None
    assert quantile(bounds, [0, 0, 0, 5], 0.99) == 4.0  # past the last bound: the last bound
    assert quantile(bounds, [4, 4, 4, 4], 0.5) == 0.5  # first bucket: from 0


async def test_overview_rates_and_percentiles_cover_only_its_window() -> None:
    stats = ApiStats()
    clock = iter([100.0, 101.0, 103.0])
    overview = Overview(stats, WorkerScraper([]), window=5.0, clock=lambda: next(clock))
    for _ in range(1000):
        stats.end_to_end_seconds.observe(5.0)  # slow results, before the window
    stats.results["ok"] += 1000
    first = await overview.document(None)
    assert first["window_s"] is None and first["api"]["results_per_s"] is None
    assert first["api"]["end_to_end_ms"]["p50"] > 1000  # since start-up on the first call
    for _ in range(500):
        stats.end_to_end_seconds.observe(0.004)
    stats.results["ok"] += 500
    second = await overview.document(None)
    assert second["window_s"] == 2.0 and second["api"]["uptime_s"] == 3.0
    assert second["api"]["results_total"] == 1500
    assert second["api"]["results_per_s"] == 250.0
    assert 3.0 < second["api"]["end_to_end_ms"]["p50"] <= 5.0  # the slow ones are not in it
    assert second["api"]["result_store"] is None and second["workers"] == []


def test_worker_figures_come_from_two_scrapes_of_the_real_collector() -> None:
    stats = WorkerStats()
    registry = CollectorRegistry()
    registry.register(WorkerCollector(stats, "w-1"))
    before = parse(generate_latest(registry).decode(), at=10.0)
    stats.records += 300
    stats.batches += 3
    stats.results["ok"] += 300
    stats.batch_size.observe_many([100, 100, 100])
    stats.compute_seconds.observe_many([0.002, 0.002, 0.002])
    stats.loop_lag_seconds.observe_many([0.0001] * 90 + [0.04] * 10)
    stats.consumer_lag = {("t", 0): 5, ("t", 1): 7}
    stats.in_flight = 1
    now = parse(generate_latest(registry).decode(), at=12.0)
    doc = figures("http://w/metrics", now, before)
    assert doc["worker"] == "w-1" and doc["up"] is True
    assert doc["records"] == 300 and doc["results"] == 300 and doc["in_flight"] == 1
    assert doc["consumer_lag"] == 12
    assert doc["records_per_s"] == 150.0
    assert doc["batch_size_mean"] == 100.0
    assert 1.0 < doc["compute_p99_ms"] <= 2.5
    assert 25 < doc["loop_lag_p99_ms"] <= 50
    first = figures("http://w/metrics", before, None)
    assert first["records_per_s"] is None and first["compute_p99_ms"] is None


async def test_the_hub_counts_what_slow_readers_lose() -> None:
    stats = ApiStats()
    hub = Hub(ResultStore(100, 1 << 20, 60.0), stats)
    slow, fast = Subscriber(capacity=2), Subscriber(capacity=100)
    hub.watch_all(slow)
    hub.watch_all(fast)
    for i in range(5):
        hub.publish(f"r{i}", orjson.dumps({"id": f"r{i}"}))
    assert stats.ws_dropped == 3 and hub.streaming == 2
    messages = [orjson.loads(m) for m in await slow.take()]
    assert messages[0] == {"type": "dropped", "count": 3}
