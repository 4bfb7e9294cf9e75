"""``processing_guarantee=exactly_once`` through the real broker: results and offsets commit
together per request partition, a stale owner is fenced, and what it wrote stays invisible to
``read_committed`` readers."""

from __future__ import annotations

import asyncio

import orjson
import pytest
from aiokafka import AIOKafkaProducer, TopicPartition
from aiokafka.errors import KafkaConnectionError, ProducerFenced
from aiokafka.partitioner import DefaultPartitioner

from consumer.transactions import Transactions, close_transactional
from tests.consumer.test_worker import running
from tests.faults.harness import committed_offsets
from tests.kafka import Deployment, TopicReader, produce, request_json, results_by_id
from tests.waiting import until


def _requests(prefix: str, n: int) -> list[tuple[bytes, bytes]]:
    return [(f"{prefix}{i}".encode(), request_json(f"{prefix}{i}", "sum", [i, 1]))
            for i in range(n)]


async def test_every_request_is_answered_once_and_committed_with_its_result(
    deployment: Deployment,
) -> None:
    settings = deployment.worker_settings(processing_guarantee="exactly_once",
                                          transaction_interval_ms=20)
    await produce(deployment.bootstrap, deployment.topics.requests, _requests("e", 400))
    async with running(settings) as worker, \
            TopicReader(deployment.bootstrap, deployment.topics.results) as reader:
        got = results_by_id(await reader.read_count(400))
        await until(lambda: worker.stats.records == 400)
    assert sorted(got) == sorted(f"e{i}" for i in range(400))
    assert all(len(v) == 1 and v[0]["result"] == i + 1.0
               for i, v in ((int(k[1:]), v) for k, v in got.items()))
    assert worker.stats.transactions >= deployment.partitions
    assert worker.stats.commit_failures == 0
    committed = await committed_offsets(deployment)
    per_partition: dict[int, int] = {}
    async with TopicReader(deployment.bootstrap, deployment.topics.requests) as requests:
        for record in await requests.read_count(400):
            per_partition[record.partition] = per_partition.get(record.partition, 0) + 1
    assert committed == per_partition, "every request partition committed to its end"


async def test_a_fenced_owner_cannot_commit_and_its_writes_stay_invisible(
    deployment: Deployment,
) -> None:
    """The argument of ``consumer/transactions.py`` on the broker: whoever initialised a
    partition's transactional id last is the only one whose transaction can commit."""
    settings = deployment.worker_settings(processing_guarantee="exactly_once")
    tp = TopicPartition(deployment.topics.requests, 0)
    tid = f"{settings.group_id}.{tp.topic}.{tp.partition}"
    stale = AIOKafkaProducer(bootstrap_servers=deployment.bootstrap, transactional_id=tid)
    await stale.start()
    await stale.begin_transaction()
    await (await stale.send(deployment.topics.results, orjson.dumps({"id": "zombie"}),
                            key=b"zombie"))
    await produce(deployment.bootstrap, deployment.topics.requests, _requests("f", 40))
    async with running(settings) as worker, \
            TopicReader(deployment.bootstrap, deployment.topics.results) as reader:
        got = results_by_id(await reader.read_count(40))
        await until(lambda: worker.stats.records == 40)
        # The worker's lane for partition 0 initialised the id after the stale producer.
        with pytest.raises(ProducerFenced):
            await stale.send_offsets_to_transaction({tp: 1_000}, settings.group_id)
            await stale.commit_transaction()
    await close_transactional(stale, 5)
    assert "zombie" not in got and len(got) == 40
    assert all(len(v) == 1 for v in got.values())
    assert (await committed_offsets(deployment)).get(0, 0) < 1_000
    async with TopicReader(deployment.bootstrap, deployment.topics.results,
                           isolation="read_uncommitted") as everything:
        seen = results_by_id(await everything.read_more(quiet=0.5))
    assert "zombie" in seen, "the stale write is in the log, aborted"


async def test_lanes_follow_the_assignment(deployment: Deployment) -> None:
    settings = deployment.worker_settings(processing_guarantee="exactly_once")
    async with running(settings) as worker:
        transactions = worker._transactions  # noqa: SLF001 - what the worker holds
        assert isinstance(transactions, Transactions)
        await until(lambda: len(transactions) == deployment.partitions)
        second_settings = settings.model_copy(update={"worker_id": "second"})
        async with running(second_settings) as second:
            other = second._transactions  # noqa: SLF001
            assert isinstance(other, Transactions)
            await until(lambda: len(transactions) + len(other) == deployment.partitions
                        and len(other) > 0, timeout=30)
            await produce(deployment.bootstrap, deployment.topics.requests, _requests("g", 80))
            async with TopicReader(deployment.bootstrap, deployment.topics.results) as reader:
                got = results_by_id(await reader.read_count(80))
        await until(lambda: len(transactions) == deployment.partitions, timeout=30)
    assert all(len(v) == 1 for v in got.values()) and len(got) == 80


async def test_batches_do_not_wait_for_the_commit_to_free_their_slot(
    deployment: Deployment,
) -> None:
    """One batch in flight and a 1 s transaction interval: if a batch held its slot until its
    transaction committed, the worker could take one batch per interval, each commit round
    holding one batch. Once in a transaction a batch frees its slot, so a round holds many."""
    settings = deployment.worker_settings(processing_guarantee="exactly_once",
                                          transaction_interval_ms=1000, max_in_flight=1,
                                          max_batch_size=10)
    await produce(deployment.bootstrap, deployment.topics.requests, _requests("s", 400))
    async with running(settings) as worker, \
            TopicReader(deployment.bootstrap, deployment.topics.results) as reader:
        got = results_by_id(await reader.read_count(400, timeout=60))
        await until(lambda: worker.stats.records == 400)
        batches, transactions = worker.stats.batches, worker.stats.transactions
    assert len(got) == 400 and all(len(v) == 1 for v in got.values())
    # Each commit round commits at most one transaction per partition.
    assert batches >= 2 * transactions, (batches, transactions)


async def test_a_lane_still_reopening_when_its_partition_moves_leaves_the_new_owner_alone(
    deployment: Deployment, monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The first worker could not open partition 0's lane (the broker refused) and was still
    retrying, its InitProducerId under way, when the partition moved to a second worker. The
    retry must stop there: finishing it would initialise the partition's transactional id
    under its new owner, fencing that owner's lane."""
    tp0 = TopicPartition(deployment.topics.requests, 0)
    # The round-robin assignor gives partition 0 to the member whose id sorts first.
    first_settings = deployment.worker_settings(processing_guarantee="exactly_once",
                                                worker_id="z-first")
    second_settings = first_settings.model_copy(update={"worker_id": "a-second"})
    real = Transactions._producer  # noqa: SLF001
    attempts: list[TopicPartition] = []
    moved, retry_ended = asyncio.Event(), asyncio.Event()

    async def producer(self: Transactions, tp: TopicPartition) -> AIOKafkaProducer:
        if self.settings.worker_id != "z-first" or tp != tp0:
            return await real(self, tp)
        attempts.append(tp)
        if len(attempts) == 1:
            raise KafkaConnectionError("refused while the broker is away")
        try:
            await moved.wait()  # the retry's InitProducerId is still under way
            return await real(self, tp)
        finally:
            retry_ended.set()

    monkeypatch.setattr(Transactions, "_producer", producer)
    partitions = list(range(deployment.partitions))
    keys = [k for k in (f"m{i}".encode() for i in range(400))
            if DefaultPartitioner()(k, partitions, partitions) == 0][:20]
    async with running(first_settings) as first:
        held = first._transactions  # noqa: SLF001 - what the worker holds
        assert isinstance(held, Transactions)
        await until(lambda: len(attempts) == 2 and len(held) == deployment.partitions - 1,
                    what="every lane but partition 0's open, its retry under way")
        async with running(second_settings) as second:
            other = second._transactions  # noqa: SLF001
            assert isinstance(other, Transactions)
            await until(lambda: tp0 in other._lanes  # noqa: SLF001
                        and len(held) + len(other) == deployment.partitions, timeout=30,
                        what="partition 0's lane open on the second worker")
            moved.set()
            await asyncio.wait_for(retry_ended.wait(), 30)
            await produce(deployment.bootstrap, deployment.topics.requests,
                          [(k, request_json(k.decode(), "sum", [1, 2])) for k in keys])
            async with TopicReader(deployment.bootstrap, deployment.topics.results) as reader:
                got = results_by_id(await reader.read_count(len(keys)))
            await until(lambda: second.stats.records >= len(keys))
            assert second.stats.transactions_failed == 0, "the second worker's lane was fenced"
        assert len(attempts) == 2
        assert tp0 not in held._lanes  # noqa: SLF001
    assert sorted(got) == sorted(k.decode() for k in keys)
    assert all(len(v) == 1 for v in got.values())
