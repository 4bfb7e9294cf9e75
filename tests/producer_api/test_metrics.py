"""GET /metrics and GET /v1/stats after real traffic, on a stack of their own (exact counts)."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import httpx
import orjson
import pytest
from prometheus_client.parser import text_string_to_metric_families
from websockets.asyncio.client import ClientConnection, connect

from core.net import free_port
from tests.producer_api.conftest import ApiStack, api_settings, new_deployment, observed_stack

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


@pytest.fixture(scope="module")
def stack(kafka_bootstrap: str) -> Iterator[ApiStack]:
    """An API and a worker whose metrics port the API scrapes for /v1/stats."""
    with observed_stack(kafka_bootstrap) as api:
        yield api


@pytest.fixture
async def http(stack: ApiStack) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=stack.base_url, timeout=30) as client:
        yield client


async def scrape(http: httpx.AsyncClient) -> Samples:
    """Every sample, keyed by name and labels (without the api label)."""
    response = await http.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain; version=0.0.4")
    samples: Samples = {}
    for family in text_string_to_metric_families(response.text):
        for s in family.samples:
            labels = tuple(sorted((k, v) for k, v in s.labels.items() if k != "api"))
            samples[(s.name, labels)] = s.value
    return samples


def delta(after: Samples, before: Samples, name: str, **labels: str) -> float:
    key = (name, tuple(sorted(labels.items())))
    assert key in after, f"{key} not scraped; have {sorted(k for k in after if k[0] == name)}"
    return after[key] - before.get(key, 0.0)


async def until(http: httpx.AsyncClient, name: str, ok: Callable[[float], bool],
                timeout: float = 10.0) -> None:
    """Scrape until the unlabelled sample ``name`` satisfies ``ok``."""
    async with asyncio.timeout(timeout):
        while not ok((await scrape(http))[(name, ())]):  # noqa: ASYNC110 - polling the server
            await asyncio.sleep(0.01)


async def stats_once(http: httpx.AsyncClient, ok: Callable[[dict[str, Any]], bool],
                     timeout: float = 10.0) -> dict[str, Any]:
    """``GET /v1/stats`` until its document satisfies ``ok`` (the snapshot and the worker
    scrape run on their own intervals); that document."""
    async with asyncio.timeout(timeout):
        while not ok(doc := (await http.get("/v1/stats")).json()):  # noqa: ASYNC110 - polling
            await asyncio.sleep(0.05)
    return doc


async def send(ws: ClientConnection, doc: Any) -> None:
    await ws.send(orjson.dumps(doc).decode())


async def count_results(ws: ClientConnection, n: int,
                        timeout: float = 30.0) -> tuple[list[Any], int]:
    """The next n results of an 'all' subscription: those received, and how many were dropped
    (the test stack queues only 50 per socket)."""
    got: list[Any] = []
    dropped = 0
    async with asyncio.timeout(timeout):
        while len(got) + dropped < n:
            msg = orjson.loads(await ws.recv())
            if msg["type"] == "result":
                got.append(msg)
            elif msg["type"] == "dropped":
                dropped += msg["count"]
    return got, dropped


def tag() -> str:
    return uuid.uuid4().hex[:10]


async def test_the_counters_move_by_what_the_api_did(
    stack: ApiStack, http: httpx.AsyncClient,
) -> None:
    before = await scrape(http)
    async with connect(stack.ws_url) as watcher, connect(stack.ws_url) as submitter:
        await send(watcher, {"type": "subscribe", "all": True})
        assert orjson.loads(await watcher.recv())["type"] == "subscribed"
        singles = [http.post("/v1/calculations", json={"op": "sum", "data": [i, 1]})
                   for i in range(20)]
        singular = {"id": f"sing-{tag()}", "op": "inv", "data": [1, 2, 2, 4]}
        for response in await asyncio.gather(*singles):
            assert response.status_code == 202
        assert (await http.post("/v1/calculations", json=singular)).status_code == 202
        assert (await http.post("/v1/calculations", json=singular)).status_code in (200, 202)
        for bad in ({"op": "nope", "data": [1]}, {"op": "sum", "data": []}):
            assert (await http.post("/v1/calculations", json=bad)).status_code == 422
        huge = {"op": "sum", "data": [1.5] * 20_000}
        assert (await http.post("/v1/calculations", json=huge)).status_code == 413
        batch = [{"op": "mean", "data": [i, 2, 3]} for i in range(10)] + [{"op": "x"}, 7]
        answer = await http.post("/v1/calculations/batch", json=batch)
        assert answer.json()["accepted"] == 10 and answer.json()["rejected"] == 2
        for i in range(3):
            await send(submitter, {"type": "submit", "request": {"op": "max", "data": [i]}})
        await send(submitter, {"type": "submit", "request": {"op": "max"}})

        results, dropped = await count_results(watcher, 20 + 1 + 10 + 3)
        assert dropped == 0 and sum(r["status"] == "error" for r in results) == 1
        after = await scrape(http)

    name = "calcstream_api_requests_accepted_total"
    assert delta(after, before, name, via="single") == 21
    assert delta(after, before, name, via="batch") == 10
    assert delta(after, before, name, via="ws") == 3
    assert delta(after, before, "calcstream_api_requests_deduplicated_total", via="single") == 1
    name = "calcstream_api_requests_rejected_total"
    assert delta(after, before, name, via="single", status="422", code="invalid_request") == 2
    assert delta(after, before, name, via="single", status="413", code="payload_too_large") == 1
    assert delta(after, before, name, via="batch", status="422", code="invalid_request") == 2
    assert delta(after, before, name, via="ws", status="422", code="invalid_request") == 1
    assert delta(after, before, "calcstream_api_results_total", status="ok") == 33
    assert delta(after, before, "calcstream_api_results_total", status="error") == 1
    assert delta(after, before, "calcstream_api_end_to_end_seconds_count") == 34
    assert delta(after, before, "calcstream_api_end_to_end_seconds_bucket", le="+Inf") == 34
    assert delta(after, before, "calcstream_api_publish_seconds_count") == 24
    assert delta(after, before, "calcstream_api_result_records_total") == 34
    assert delta(after, before, "calcstream_api_event_loop_lag_seconds_count") > 0
    assert after[("calcstream_api_websocket_connections", ())] == 2
    assert after[("calcstream_api_websocket_streams", ())] == 1
    assert after[("calcstream_api_result_store", (("unit", "ids"),))] >= 34
    assert after[("calcstream_api_result_store", (("unit", "bytes"),))] > 0
    assert after[("calcstream_api_result_waiters", ())] == 0
    assert after[("calcstream_api_results_caught_up", ())] == 1
    assert after[("process_resident_memory_bytes", ())] > 0

    assert delta(after, before, "calcstream_api_websocket_connections_opened_total") == 2
    # The server notices the close handshakes on its own time.
    await until(http, "calcstream_api_websocket_connections", lambda v: v == 0)


async def test_stats_show_throughput_latency_and_the_worker(
    stack: ApiStack, http: httpx.AsyncClient,
) -> None:
    first = (await http.get("/v1/stats")).json()
    async with connect(stack.ws_url) as watcher:
        await send(watcher, {"type": "subscribe", "all": True})
        assert orjson.loads(await watcher.recv())["type"] == "subscribed"
        answer = await http.post("/v1/calculations/batch",
                                 json=[{"op": "sum", "data": [i, 2]} for i in range(100)])
        assert answer.json()["accepted"] == 100
        _, dropped = await count_results(watcher, 100)
    doc = await stats_once(http, lambda d: d["api"]["results_total"] - first["api"][
        "results_total"] == 100 and d["window_s"] > 0 and d["api"]["results_per_s"] > 0
        and bool(d["workers"]) and d["workers"][0]["records"] >= 100)
    api = doc["api"]
    assert api["results_total"] - first["api"]["results_total"] == 100
    assert api["results_per_s"] > 0 and doc["window_s"] > 0
    latency = api["end_to_end_ms"]
    assert 0 < latency["p50"] <= latency["p95"] <= latency["p99"]
    assert api["result_store"]["ids"] >= 100 and api["caught_up"] is True
    assert api["loop_lag_ms"]["samples"] > 0
    assert api["websocket"]["dropped"] - first["api"]["websocket"]["dropped"] == dropped
    (worker,) = doc["workers"]
    assert stack.worker_settings is not None
    assert worker["up"] is True and worker["worker"] == stack.worker_settings.worker_id
    assert worker["records"] >= 100 and worker["consumer_lag"] >= 0
    assert doc["consumer_lag"] == worker["consumer_lag"]
    assert worker["records_per_s"] > 0 and worker["batch_size_mean"] >= 1
    assert worker["loop_lag_p99_ms"] is not None


DEAD = f"http://127.0.0.1:{free_port()}/metrics"


@pytest.fixture
def without_workers(kafka_bootstrap: str) -> Iterator[ApiStack]:
    """An API with no worker (nothing is ever computed) and worker URLs that do not answer."""
    settings = api_settings(new_deployment(kafka_bootstrap),
                            worker_metrics_urls=f"{DEAD}, ftp://x/metrics")
    with ApiStack(settings) as api:
        yield api


async def test_without_workers_waiters_show_and_workers_are_down(
    without_workers: ApiStack,
) -> None:
    async with httpx.AsyncClient(base_url=without_workers.base_url, timeout=30) as http:
        waiting = asyncio.ensure_future(http.post(
            "/v1/calculations", params={"wait": 1.5}, json={"op": "sum", "data": [1]}))
        await until(http, "calcstream_api_result_waiters", lambda v: v == 1)
        doc = (await http.get("/v1/stats")).json()
        assert doc["api"]["result_store"]["waiters"] == 1
        assert (await waiting).status_code == 202  # the wait ran out: no result, no waiter
        await until(http, "calcstream_api_result_waiters", lambda v: v == 0)
    assert [(w["url"], w["up"]) for w in doc["workers"]] == [(DEAD, False),
                                                             ("ftp://x/metrics", False)]
    assert all(w["error"] for w in doc["workers"]) and doc["consumer_lag"] is None
