"""The worker end to end through the real broker: requests in, results and dead letters out."""

from __future__ import annotations

import asyncio
import contextlib
import math
import time
from collections.abc import AsyncIterator
from typing import Any

import numpy as np
import orjson
import pytest

from consumer import ops
from consumer.errors import ClientStalled
from consumer.settings import WorkerSettings
from consumer.worker import Worker
from schemas.encoding import BINARY, CONTENT_TYPE_HEADER, encode_binary
from schemas.messages import CalcResult, DeadLetterHeaders, RequestFields
from tests.kafka import Deployment, TopicReader, produce, request_json, results_by_id
from tests.waiting import until


@contextlib.asynccontextmanager
async def running(settings: WorkerSettings) -> AsyncIterator[Worker]:
    """A real worker running in this loop until the block exits (then it drains and stops)."""
    worker = Worker(settings)
    await worker.start()
    task = asyncio.create_task(worker.run())
    try:
        yield worker
    finally:
        worker.request_stop()
        await asyncio.wait_for(task, 30)
        await worker.stop()


def _example(op: str, rng: np.random.Generator) -> tuple[list[float], dict[str, Any]]:
    if op == "dot":
        return rng.normal(size=2 * int(rng.integers(1, 20))).tolist(), {}
    if op == "matmul":
        m, k, n = (int(v) for v in rng.integers(1, 6, size=3))
        return rng.normal(size=m * k + k * n).tolist(), {"m": m, "k": k, "n": n}
    if op == "inv":
        n = int(rng.integers(1, 5))
        return (rng.normal(size=(n, n)) + n * np.eye(n)).ravel().tolist(), {}
    if op in ("var", "std"):
        return rng.normal(size=int(rng.integers(3, 50))).tolist(), {"ddof": int(rng.integers(0, 2))}
    return rng.normal(size=int(rng.integers(1, 50))).tolist(), {}


def _close(got: Any, want: Any) -> bool:
    return bool(np.allclose(np.asarray(got, dtype=float), np.asarray(want, dtype=float),
                            rtol=1e-9, atol=1e-9))


async def test_every_op_answers_correctly(deployment: Deployment) -> None:
    rng = np.random.default_rng(7)
    requests: dict[str, tuple[str, list[float], dict[str, Any]]] = {}
    for name in ops.REGISTRY:
        for i in range(5):
            data, args = _example(name, rng)
            requests[f"{name}-{i}"] = (name, data, args)
    await produce(deployment.bootstrap, deployment.topics.requests, [
        (rid.encode(), request_json(rid, op, data, args=args))
        for rid, (op, data, args) in requests.items()
    ])
    async with running(deployment.worker_settings()), \
            TopicReader(deployment.bootstrap, deployment.topics.results) as reader:
        await reader.read_count(len(requests))
        results = results_by_id(await reader.read_more(quiet=0.3))
    assert set(results) == set(requests)
    for rid, (op, data, args) in requests.items():
        (doc,) = results[rid]
        CalcResult.model_validate(doc)
        assert doc["status"] == "ok", doc
        op_ = ops.get(op)
        want = op_.reference(np.asarray(data), op_.parse(len(data), args))
        assert _close(doc["result"], want), (rid, doc["result"], want)


async def test_binary_requests_are_computed(deployment: Deployment) -> None:
    rng = np.random.default_rng(1)
    arrays = {f"bin-{i}": rng.normal(size=1000) for i in range(20)}
    await produce(deployment.bootstrap, deployment.topics.requests, [
        (rid.encode(), encode_binary(RequestFields(id=rid, op="l2_norm"), a),
         [(CONTENT_TYPE_HEADER, BINARY.encode())])
        for rid, a in arrays.items()
    ])
    async with running(deployment.worker_settings()), \
            TopicReader(deployment.bootstrap, deployment.topics.results) as reader:
        results = results_by_id(await reader.read_count(len(arrays)))
    for rid, a in arrays.items():
        assert math.isclose(results[rid][0]["result"], float(np.linalg.norm(a)), rel_tol=1e-12)


async def test_requests_are_micro_batched_under_load(deployment: Deployment) -> None:
    n = 3000
    await produce(deployment.bootstrap, deployment.topics.requests, [
        (f"r{i}".encode(), request_json(f"r{i}", "sum_of_squares", [float(i), 1.0]))
        for i in range(n)
    ])
    async with running(deployment.worker_settings(max_batch_size=256)) as worker, \
            TopicReader(deployment.bootstrap, deployment.topics.results) as reader:
        results = results_by_id(await reader.read_count(n))
        assert worker.stats.batches < n / 4, worker.stats
    assert len(results) == n
    assert max(doc[0]["batch_size"] for doc in results.values()) > 1
    assert all(doc[0]["batch_size"] <= 256 for doc in results.values())
    assert all(doc[0]["result"] == float(i) ** 2 + 1 for i, doc in
               ((int(k[1:]), v) for k, v in results.items()))



async def test_a_worker_that_lets_the_broker_gather_requests_still_answers_a_lone_one(
        deployment: Deployment) -> None:
    # The broker holds each fetch until a megabyte of requests is there or fetch_max_wait_ms
    # passes; requests that trickle in one at a time come out of the second bound.
    settings = deployment.worker_settings(fetch_min_bytes=1 << 20, fetch_max_wait_ms=50)
    assert settings.consumer_options()["fetch_min_bytes"] == 1 << 20
    async with running(settings), \
            TopicReader(deployment.bootstrap, deployment.topics.results) as reader:
        for i in range(3):
            await produce(deployment.bootstrap, deployment.topics.requests,
                          [(f"lone-{i}".encode(), request_json(f"lone-{i}", "sum", [i, 1.0]))])
            (doc,) = results_by_id(await reader.read_count(i + 1))[f"lone-{i}"]
            assert doc["result"] == i + 1.0

POISON: list[tuple[str, bytes | None, bytes]] = [
    ("decode", b"p-json", b"{this is not json"),
    ("validate", b"p-schema", orjson.dumps({"id": "p-schema", "op": "sum", "values": [1]})),
    ("validate", b"p-op", orjson.dumps({"id": "p-op", "op": "no_such_op", "data": [1]})),
    ("validate", b"p-shape", orjson.dumps({"id": "p-shape", "op": "dot", "data": [1, 2, 3]})),
    ("validate", b"p-args", orjson.dumps(
        {"id": "p-args", "op": "matmul", "data": [1, 2], "args": {"m": 1}})),
    ("decode", None, b"\xff\xfe\x00garbage"),
]


async def test_poison_records_are_dead_lettered_and_the_partition_moves_on(
    deployment: Deployment,
) -> None:
    good = [(f"g{i}".encode(), request_json(f"g{i}", "sum", [1.0, float(i)])) for i in range(40)]
    poison = [(key, value) for _, key, value in POISON]
    # Everything on one partition (explicit key-less interleaving would spread it): interleave.
    records = [rec for pair in zip(good, poison + [None] * (len(good) - len(poison)), strict=True)
               for rec in pair if rec]
    await produce(deployment.bootstrap, deployment.topics.requests, records)
    async with running(deployment.worker_settings()), \
            TopicReader(deployment.bootstrap, deployment.topics.dlq) as dlq, \
            TopicReader(deployment.bootstrap, deployment.topics.results) as results:
        dead = await dlq.read_count(len(POISON))
        answered = results_by_id(await results.read_until(
            lambda recs: {f"g{i}" for i in range(40)} <= {orjson.loads(r.value)["id"] for r in recs}
        ))
    by_value = {r.value: r for r in dead}
    for stage, key, value in POISON:
        record = by_value[value]
        assert record.key == key
        headers = DeadLetterHeaders.from_headers(record.headers)
        assert headers.stage == stage
        assert headers.original_topic == deployment.topics.requests
        assert headers.consumer_group == deployment.group
        assert headers.error_message
        if key is not None:
            assert headers.request_id == key.decode()
            (err,) = answered[key.decode()]
            assert err["status"] == "error" and err["error"]["code"] == "invalid_request"
    assert all(answered[f"g{i}"][0]["result"] == 1.0 + i for i in range(40))


async def test_long_json_requests_beside_a_broken_one_are_each_answered_as_alone(
    deployment: Deployment,
) -> None:
    # Requests of 200 numbers have their data read straight into float64 and their fields
    # validated a batch at a time; one whose fields break the contract sends its batch the
    # full way, and must still fail alone with the contract's own message.
    rng = np.random.default_rng(11)
    rows = {f"long-{i}": rng.normal(size=200) for i in range(30)}
    records = [(rid.encode(), request_json(rid, "sum_of_squares", row.tolist()))
               for rid, row in rows.items()]
    broken = request_json("long-broken", "sum_of_squares", rng.normal(size=200).tolist(),
                          colour="blue")
    records.insert(15, (b"long-broken", broken))
    await produce(deployment.bootstrap, deployment.topics.requests, records)
    async with running(deployment.worker_settings()), \
            TopicReader(deployment.bootstrap, deployment.topics.dlq) as dlq, \
            TopicReader(deployment.bootstrap, deployment.topics.results) as results:
        (dead,) = await dlq.read_count(1)
        answered = results_by_id(await results.read_count(len(records)))
    headers = DeadLetterHeaders.from_headers(dead.headers)
    assert headers.stage == "validate" and "colour" in headers.error_message
    (err,) = answered["long-broken"]
    assert err["status"] == "error" and "colour" in err["error"]["message"]
    for rid, row in rows.items():
        (doc,) = answered[rid]
        assert doc["status"] == "ok" and math.isclose(doc["result"], float(row @ row),
                                                      rel_tol=1e-12), doc


async def test_a_record_too_big_to_dead_letter_whole_is_cut_to_fit(
    deployment: Deployment,
) -> None:
    limit = 64 * 1024
    # Near the record limit already: with the dlq.* headers added it would pass it.
    poison = b"{" + b"x" * (limit - 300)
    await produce(deployment.bootstrap, deployment.topics.requests, [
        (b"huge", poison), (b"after", request_json("after", "sum", [1.0, 2.0]))])
    async with running(deployment.worker_settings(max_message_bytes=limit)), \
            TopicReader(deployment.bootstrap, deployment.topics.dlq) as dlq, \
            TopicReader(deployment.bootstrap, deployment.topics.results) as results:
        (dead,) = await dlq.read_count(1)
        answered = results_by_id(await results.read_count(2))
    headers = DeadLetterHeaders.from_headers(dead.headers)
    assert headers.original_value_bytes == len(poison)
    assert headers.request_id == "huge" and headers.stage == "decode"
    assert dead.value is not None and poison.startswith(dead.value)
    size = len(dead.key or b"") + len(dead.value) + sum(len(k) + len(v) for k, v in dead.headers)
    assert size <= limit
    assert answered["huge"][0]["status"] == "error"
    assert answered["after"][0]["result"] == 3.0


async def test_a_failing_request_fails_alone(deployment: Deployment) -> None:
    mats = {f"m{i}": np.eye(3) * (i + 1) for i in range(6)}
    mats["singular"] = np.ones((3, 3))
    await produce(deployment.bootstrap, deployment.topics.requests, [
        (rid.encode(), request_json(rid, "inv", m.ravel().tolist())) for rid, m in mats.items()
    ])
    async with running(deployment.worker_settings(max_batch_delay_ms=200)), \
            TopicReader(deployment.bootstrap, deployment.topics.results) as reader:
        results = results_by_id(await reader.read_count(len(mats)))
    (bad,) = results["singular"]
    assert bad["status"] == "error" and bad["error"]["code"] == "singular_matrix"
    for i in range(6):
        (doc,) = results[f"m{i}"]
        assert doc["status"] == "ok"
        assert np.allclose(doc["result"], np.eye(3) / (i + 1))


async def test_past_deadlines_expire_without_compute(deployment: Deployment) -> None:
    now = time.time()
    await produce(deployment.bootstrap, deployment.topics.requests, [
        (b"late", request_json("late", "sum", [1, 2], deadline=now - 1)),
        (b"fine", request_json("fine", "sum", [1, 2], deadline=now + 600)),
    ])
    async with running(deployment.worker_settings()), \
            TopicReader(deployment.bootstrap, deployment.topics.results) as reader:
        results = results_by_id(await reader.read_count(2))
    assert results["late"][0]["status"] == "expired"
    assert results["late"][0]["result"] is None
    assert results["fine"][0]["status"] == "ok" and results["fine"][0]["result"] == 3.0


async def test_restarted_worker_resumes_after_its_commits(deployment: Deployment) -> None:
    first = [(f"a{i}".encode(), request_json(f"a{i}", "sum", [i])) for i in range(100)]
    second = [(f"b{i}".encode(), request_json(f"b{i}", "sum", [i])) for i in range(100)]
    settings = deployment.worker_settings()
    async with TopicReader(deployment.bootstrap, deployment.topics.results) as reader:
        await produce(deployment.bootstrap, deployment.topics.requests, first)
        async with running(settings):
            await reader.read_count(100)
        await produce(deployment.bootstrap, deployment.topics.requests, second)
        async with running(settings):
            await reader.read_count(200)
        results = results_by_id(await reader.read_more(quiet=0.5))
    assert len(results) == 200
    assert all(len(docs) == 1 for docs in results.values()), "a clean restart made duplicates"


@pytest.mark.parametrize("in_flight", [1, 3])
async def test_backpressure_bounds_batches_in_flight(
    deployment: Deployment, in_flight: int
) -> None:
    n = 2000
    await produce(deployment.bootstrap, deployment.topics.requests, [
        (f"r{i}".encode(), request_json(f"r{i}", "mean", [1.0] * 50)) for i in range(n)
    ])
    settings = deployment.worker_settings(max_batch_size=50, max_in_flight=in_flight)
    async with running(settings) as worker, \
            TopicReader(deployment.bootstrap, deployment.topics.results) as reader:
        await reader.read_count(n)
    assert 1 <= worker.stats.peak_in_flight <= in_flight
    assert worker.stats.batches >= n / 50


async def test_a_backlog_waits_on_the_topic_not_in_the_worker(deployment: Deployment) -> None:
    n, size, in_flight = 3000, 20, 2
    await produce(deployment.bootstrap, deployment.topics.requests, [
        (f"b{i}".encode(), request_json(f"b{i}", "mean", [1.0] * 50)) for i in range(n)
    ])
    settings = deployment.worker_settings(max_batch_size=size, max_in_flight=in_flight)
    async with running(settings) as worker, \
            TopicReader(deployment.bootstrap, deployment.topics.results) as reader:
        await reader.read_count(n)
    # The whole backlog was on the topic from the start; the worker never took more than its
    # queue and its batches in flight can hold.
    assert size <= worker.stats.peak_held <= (in_flight + 1) * size
    assert worker.stats.records == n


async def test_metrics_endpoint_reports_what_the_worker_did(deployment: Deployment) -> None:
    import httpx

    n = 300
    await produce(deployment.bootstrap, deployment.topics.requests, [
        (f"r{i}".encode(), request_json(f"r{i}", "sum", [1.0, 2.0])) for i in range(n)
    ] + [(b"junk", b"not json")])
    async with running(deployment.worker_settings()) as worker, \
            TopicReader(deployment.bootstrap, deployment.topics.results) as reader:
        await reader.read_count(n + 1)
        # A batch is counted once it is committed, a moment after its results can be read.
        await until(lambda: worker.stats.records == n + 1)
        assert worker.metrics is not None
        async with httpx.AsyncClient() as client:
            response = await client.get(f"http://127.0.0.1:{worker.metrics.port}/metrics")
            missing = await client.get(f"http://127.0.0.1:{worker.metrics.port}/other")
    assert response.status_code == 200 and missing.status_code == 404
    text = response.text
    worker_id = deployment.worker_settings().worker_id

    def value(line_start: str) -> float:
        (line,) = [ln for ln in text.splitlines() if ln.startswith(line_start)]
        return float(line.rsplit(" ", 1)[1])

    assert value(f'calcstream_worker_records_total{{worker="{worker_id}"}}') == n + 1
    assert value(f'calcstream_worker_results_total{{status="ok",worker="{worker_id}"}}') == n
    assert value(f'calcstream_worker_results_total{{status="error",worker="{worker_id}"}}') == 1
    assert value(f'calcstream_worker_dead_letters_total{{worker="{worker_id}"}}') == 1
    assert value(f'calcstream_worker_batch_size_count{{worker="{worker_id}"}}') >= 1
    assert value(f'calcstream_worker_end_to_end_seconds_count{{worker="{worker_id}"}}') == n + 1
    assert value(f'calcstream_worker_event_loop_lag_seconds_count{{worker="{worker_id}"}}') > 0


async def test_workers_share_results_through_the_redis_cache(deployment: Deployment,
                                                             redis_url: str) -> None:
    rng = np.random.default_rng()
    arrays = [rng.normal(size=(5, 5)) for _ in range(20)]
    settings = deployment.worker_settings(redis_url=f"{redis_url}/13")
    first = [(f"a{i}".encode(), request_json(f"a{i}", "inv", a.ravel().tolist()))
             for i, a in enumerate(arrays)]
    again = [(f"b{i}".encode(), request_json(f"b{i}", "inv", a.ravel().tolist()))
             for i, a in enumerate(arrays)]
    async with TopicReader(deployment.bootstrap, deployment.topics.results) as reader:
        await produce(deployment.bootstrap, deployment.topics.requests, first)
        async with running(settings):
            await reader.read_count(len(first))
        await produce(deployment.bootstrap, deployment.topics.requests, again)
        async with running(settings) as worker:  # a fresh process-local state: only Redis knows
            results = results_by_id(await reader.read_count(2 * len(arrays)))
        assert worker.stats.cache_hits == len(arrays)  # counted once committed: after the drain
    for i, a in enumerate(arrays):
        (computed,), (cached,) = results[f"a{i}"], results[f"b{i}"]
        assert computed["cached"] is False and cached["cached"] is True
        assert cached["result"] == computed["result"]
        assert np.allclose(cached["result"], np.linalg.inv(a))


class _LagWatchDies(Worker):
    """A worker whose consumer-lag watch fails after its first round."""

    async def _watch_lag(self, interval: float = 1.0) -> None:
        await asyncio.sleep(0)
        raise RuntimeError("the lag watch broke")


async def test_a_background_task_that_dies_stops_the_worker_with_its_error(
        deployment: Deployment) -> None:
    worker = _LagWatchDies(deployment.worker_settings())
    await worker.start()
    try:
        with pytest.raises(RuntimeError, match="the lag watch broke"):
            await asyncio.wait_for(worker.run(), 30)
    finally:
        await worker.stop()


async def test_a_kafka_client_whose_metadata_task_ended_stops_the_worker(
        deployment: Deployment) -> None:
    """aiokafka's consumer, its metadata task gone, would never find its coordinator again:
    silent, answering nothing. The worker stops with an error to be restarted instead."""
    worker = Worker(deployment.worker_settings())
    await worker.start()
    try:
        metadata_task = worker._consumer._client._sync_task  # type: ignore[union-attr]
        metadata_task.cancel()
        with pytest.raises(ClientStalled, match="consumer's metadata task ended"):
            await asyncio.wait_for(worker.run(), 30)
    finally:
        await worker.stop()
