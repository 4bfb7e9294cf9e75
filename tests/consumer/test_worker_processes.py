"""Workers as real processes: two workers sharing one group, and a worker stopped while its
broker is gone.

The SIGTERM drain under load is a fault scenario: ``tests/faults/test_restarts.py``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import orjson
import pytest

from core.kafka import EmbeddedKafka
from core.net import free_port
from schemas.topics import Topics
from tests.kafka import (
    Deployment,
    TopicReader,
    create_topics,
    produce,
    request_json,
    results_by_id,
    unique,
)
from tests.processes import WorkerProcess


@pytest.fixture
def workers(deployment: Deployment) -> Iterator[list[WorkerProcess]]:
    started: list[WorkerProcess] = []
    yield started
    for w in started:
        w.close()


async def test_two_workers_share_partitions_and_answer_each_request_once(
    deployment: Deployment, workers: list[WorkerProcess]
) -> None:
    workers += [WorkerProcess(deployment, "w1"), WorkerProcess(deployment, "w2")]
    n = 0
    async with TopicReader(deployment.bootstrap, deployment.topics.results) as reader:
        # Keep the load coming until both members have answered something.
        async with asyncio.timeout(60):
            while {orjson.loads(r.value)["worker"] for r in reader.records} != {"w1", "w2"}:
                await produce(deployment.bootstrap, deployment.topics.requests, [
                    (f"r{i}".encode(), request_json(f"r{i}", "sum", [float(i), 1.0]))
                    for i in range(n, n + 200)
                ])
                n += 200
                await reader.read_count(n, timeout=30)
        await reader.read_count(n, timeout=60)
        results = results_by_id(await reader.read_more(quiet=1.0))
        for w in workers:
            assert await w.terminate() == 0
    assert len(results) == n
    assert all(len(v) == 1 for v in results.values())
    assert all(v[0]["result"] == float(k[1:]) + 1 for k, v in results.items())
    assert {v[0]["worker"] for v in results.values()} == {"w1", "w2"}


async def test_a_worker_stopped_while_its_broker_is_gone_shuts_down_cleanly() -> None:
    # With its fetch in aiokafka's retry back-off, consumer.stop() let the CancelledError of
    # that fetch escape: the worker ended in a traceback, its client's connections unclosed.
    broker = EmbeddedKafka(free_port())
    await asyncio.to_thread(broker.start)
    suffix = unique("gone")
    dep = Deployment(broker.bootstrap_servers,
                     Topics(f"rq-{suffix}", f"rs-{suffix}", f"dl-{suffix}"), f"g-{suffix}", 2)
    worker = None
    try:
        await create_topics(dep.bootstrap, dep.topics.all(), 2)
        worker = WorkerProcess(dep, "orphaned")
        await worker.wait_for_assignment(2)
        mark = worker.mark()
        await asyncio.to_thread(broker.stop)
        await worker.wait_for_log("Failed fetch messages", since=mark)  # retrying now
        assert await worker.terminate() == 0
        log = worker.log()
    finally:
        if worker is not None:
            worker.close()
        await asyncio.to_thread(broker.close)
    assert "worker orphaned shut down gracefully" in log, log[-3000:]
    assert "Traceback" not in log, log[-3000:]
