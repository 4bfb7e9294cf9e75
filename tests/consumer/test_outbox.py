"""``send_all`` on a real broker: every record acknowledged, on its key's partition,
in order per partition, headers kept, record batches split at the producer's batch size, and
every record handed back, not raised, when the broker is gone."""

from __future__ import annotations

import asyncio

from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError

from consumer.outbox import Outgoing, send_all
from core.kafka import EmbeddedKafka
from core.net import free_port
from schemas.topics import partition_of
from tests.kafka import Deployment, TopicReader


async def _producer(deployment: Deployment, batch_bytes: int) -> AIOKafkaProducer:
    options = deployment.broker_settings().producer_options()
    producer = AIOKafkaProducer(**{**options, "max_batch_size": batch_bytes})
    await producer.start()
    return producer


async def test_every_record_lands_on_its_key_partition_in_order(deployment: Deployment) -> None:
    topic = deployment.topics.results
    records: list[Outgoing] = [
        (topic, None, f"id-{i % 37}".encode(), f"value-{i}".encode(), None) for i in range(400)
    ]
    records.append((topic, 2, b"pinned", b"to partition 2", [("origin", b"test")]))
    records.append((topic, 99, b"stray", b"names a partition the topic lacks", None))
    producer = await _producer(deployment, 2048)  # ~40 records per record batch
    try:
        unacked, errors = await send_all(producer, records)
    finally:
        await producer.stop()
    assert (unacked, errors) == ([], [])

    async with TopicReader(deployment.bootstrap, topic) as reader:
        got = await reader.read_count(len(records))
    assert len(got) == len(records)
    partitions = list(range(deployment.partitions))
    by_key: dict[bytes, list[tuple[int, int, bytes]]] = {}
    for r in got:
        by_key.setdefault(r.key, []).append((r.partition, r.offset, r.value))
    for key, landed in by_key.items():
        if key == b"pinned":
            assert [p for p, _, _ in landed] == [2]
            continue
        # A stray partition number does not block the batch: the record goes by its key.
        # The partition of its key, as the API picks it for requests.
        assert {p for p, _, _ in landed} == {partition_of(key, partitions)}
        values = [v for _, _, v in sorted(landed)]
        sent = [value for _, _, k, value, _ in records if k == key]
        assert values == sent  # the order given, by offset
    pinned = next(r for r in got if r.key == b"pinned")
    assert list(pinned.headers) == [("origin", b"test")]


async def test_a_record_larger_than_the_batch_size_goes_alone(deployment: Deployment) -> None:
    topic = deployment.topics.results
    big = b"x" * 10_000
    records: list[Outgoing] = [(topic, 0, b"small", b"a", None), (topic, 0, b"big", big, None),
                               (topic, 0, b"small", b"b", None)]
    producer = await _producer(deployment, 1024)
    try:
        assert await send_all(producer, records) == ([], [])
    finally:
        await producer.stop()
    async with TopicReader(deployment.bootstrap, topic) as reader:
        got = await reader.read_count(3)
    assert [r.value for r in sorted(got, key=lambda r: r.offset)] == [b"a", big, b"b"]


async def test_a_broker_that_went_away_hands_every_record_back_with_the_error() -> None:
    """Nothing raises: the caller (the worker's publish loop) retries what comes back."""
    broker = EmbeddedKafka(free_port())
    await asyncio.to_thread(broker.start)
    producer = AIOKafkaProducer(bootstrap_servers=broker.bootstrap_servers, acks="all",
                                request_timeout_ms=1000)
    try:
        await producer.start()
        await asyncio.to_thread(broker.kill)
        records: list[Outgoing] = [
            ("never.seen", None, b"k", b"v", None),  # needs metadata the broker cannot give
            ("never.seen", 1, b"k", b"w", None),
        ]
        unacked, errors = await send_all(producer, records)
        assert unacked == records
        assert errors and all(isinstance(e, KafkaError) for e in errors)
    finally:
        await producer.stop()
        await asyncio.to_thread(broker.close)
