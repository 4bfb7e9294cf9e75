"""``core.producers.stop_producer``: a producer whose broker is gone stops in bounded time,
without an error of its own, and the records it still held fail with a timeout."""

from __future__ import annotations

import asyncio

import pytest
from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaTimeoutError

from core.connections import guard_broken_connections
from core.kafka import EmbeddedKafka
from core.net import free_port
from core.producers import stop_producer
from tests.kafka import create_topics, unique


async def test_a_producer_whose_broker_went_away_stops_and_fails_what_it_held() -> None:
    guard_broken_connections()  # as the services run it
    broker = EmbeddedKafka(free_port())
    await asyncio.to_thread(broker.start)
    topic = unique("gone")
    producer = AIOKafkaProducer(bootstrap_servers=broker.bootstrap_servers, acks="all",
                                enable_idempotence=True, linger_ms=1)
    try:
        await create_topics(broker.bootstrap_servers, [topic], 1)
        await producer.start()
        await (await producer.send(topic, b"taken"))
        await asyncio.to_thread(broker.stop)
        held = [await producer.send(topic, b"held %d" % i) for i in range(10)]
        async with asyncio.timeout(30):
            await stop_producer(producer, 1.0)
        for delivery in held:
            with pytest.raises(KafkaTimeoutError):
                await delivery
    finally:
        await stop_producer(producer, 1.0)  # done already unless the test failed before it
        await asyncio.to_thread(broker.close)
