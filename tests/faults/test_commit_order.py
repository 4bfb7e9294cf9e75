"""Offsets follow acknowledged results, never the other way round.

``Worker._handle`` runs compute → ``_publish`` (returns only once every record is acked) →
``CommitLog.finish`` → ``_commit``, and ``_commit`` commits only ``CommitLog.committable()``:
the finished prefix of batches in fetch order. So a crash can leave results published and
not committed (duplicates, ``test_kills.py``), never committed and not published (loss). These
tests show both halves: the ordering on its own, and a real broker that refuses the results.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass

import pytest

from consumer.batching import CommitLog
from consumer.worker import Worker
from schemas.topics import Topics
from tests.faults.brokers import create_topics_refusing
from tests.faults.harness import committed_offsets
from tests.kafka import Deployment, TopicReader, produce, request_json, unique


@dataclass(frozen=True)
class Consumed:
    topic: str
    partition: int
    offset: int


def consumed(partition: int, offsets: range) -> list[Consumed]:
    return [Consumed("rq", partition, o) for o in offsets]


def test_a_batch_is_committable_only_once_it_and_every_earlier_batch_is_finished() -> None:
    log = CommitLog()
    first = log.open([*consumed(0, range(0, 10)), *consumed(1, range(0, 5))])
    second = log.open(consumed(0, range(10, 20)))
    assert log.committable() == {}, "nothing is finished"
    log.finish(second)
    assert log.committable() == {}, "a later batch must not commit past an unpublished one"
    log.finish(first)
    assert log.committable() == {("rq", 0): 20, ("rq", 1): 5}
    assert log.committable() == {}, "committed offsets are handed out once"
    assert len(log) == 0


async def test_nothing_is_committed_while_the_broker_refuses_the_results(
    kafka_bootstrap: str, caplog: pytest.LogCaptureFixture,
) -> None:
    suffix = unique("refused")
    topics = Topics(f"rq-{suffix}", f"rs-{suffix}", f"dl-{suffix}")
    dep = Deployment(kafka_bootstrap, topics, f"g-{suffix}", 1)
    await create_topics_refusing(dep.bootstrap, [*topics.all(), f"{topics.requests}.attempts"],
                                 [topics.results], 1)
    await produce(dep.bootstrap, topics.requests,
                  [(f"r{i}".encode(), request_json(f"r{i}", "sum", [i, 1])) for i in range(10)])
    worker = Worker(dep.worker_settings(create_topics=False, drain_timeout_s=0.5))
    await worker.start()
    task = asyncio.create_task(worker.run())
    try:
        async with asyncio.timeout(30):
            while worker.stats.publish_retries < 3:  # noqa: ASYNC110 - in-process counter
                await asyncio.sleep(0.05)
        assert await committed_offsets(dep) == {}
    finally:
        with caplog.at_level(logging.WARNING, logger="consumer.worker"):
            worker.request_stop()
            await asyncio.wait_for(task, 30)
            await worker.stop()
    assert "abandoned 1 batches" in caplog.text
    assert await committed_offsets(dep) == {}
    async with TopicReader(dep.bootstrap, topics.results) as reader:
        assert await reader.read_more(quiet=0.3) == [], "the broker took no result"
