"""The reply-topic reader on a real broker that restarts empty and gets its topics re-created."""

from __future__ import annotations

import asyncio

import orjson
from aiokafka import AIOKafkaProducer

from calcstream.broker import EmbeddedBroker, free_port
from consumer.admin import ensure_topics, wait_for_broker
from producer_api.results import ResultReader, ResultStore
from schemas.topics import Topics
from tests.kafka import Deployment, create_topics, unique
from tests.producer_api.conftest import api_settings

PARTITIONS = 4


def result(request_id: str) -> bytes:
    """A result document as the worker writes it."""
    return orjson.dumps({"id": request_id, "op": "sum", "status": "ok", "result": 1.0,
                         "error": None})


async def write_results(bootstrap: str, topic: str, prefix: str, per_partition: int) -> set[str]:
    """``per_partition`` results on every partition; their ids."""
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all")
    await producer.start()
    try:
        acks, ids = [], set()
        for p in range(PARTITIONS):
            for i in range(per_partition):
                ids.add(request_id := f"{prefix}-{p}-{i}")
                acks.append(await producer.send(topic, result(request_id), partition=p))
        await asyncio.gather(*acks)
        return ids
    finally:
        await producer.stop()


async def test_the_reader_rereads_partitions_of_a_topic_that_came_back_empty() -> None:
    broker = EmbeddedBroker(free_port())
    await asyncio.to_thread(broker.start)
    suffix = unique("reread")
    dep = Deployment(broker.bootstrap_servers,
                     Topics(f"rq-{suffix}", f"rs-{suffix}", f"dl-{suffix}"), f"g-{suffix}",
                     PARTITIONS)
    reader = None
    try:
        await create_topics(dep.bootstrap, dep.topics.all(), PARTITIONS)
        settings = api_settings(dep)
        reader = ResultReader(settings, ResultStore(10_000, 1 << 24, 600.0))
        seen: set[str] = set()
        arrived = asyncio.Event()

        def note(request_id: str, value: bytes) -> None:
            seen.add(request_id)
            arrived.set()

        async def wait_for(ids: set[str]) -> None:
            try:
                async with asyncio.timeout(15):
                    while not ids <= seen:
                        arrived.clear()
                        await arrived.wait()
            except TimeoutError:
                raise AssertionError(f"never relayed: {sorted(ids - seen)}") from None

        reader.listeners.append(note)
        await reader.start(set(range(PARTITIONS)))
        await asyncio.wait_for(reader.caught_up.wait(), 15)
        await wait_for(await write_results(dep.bootstrap, settings.results_topic, "before", 5))

        await asyncio.to_thread(broker.kill)
        await asyncio.to_thread(broker.start)
        await wait_for_broker(dep.bootstrap)
        # What the worker does when it finds its topics gone. Fewer results per partition than
        # were read before: whenever the reader fetches next, it finds its positions past the
        # end of the new partitions, with no race against these writes.
        await ensure_topics(dep.broker_settings())
        after = await write_results(dep.bootstrap, settings.results_topic, "after", 3)
        await wait_for(after)
        more = await write_results(dep.bootstrap, settings.results_topic, "more", 4)
        await wait_for(more)

        assert reader.running
        store = reader.store
        for request_id in after | more:
            entry = store.get(request_id)
            assert entry is not None and entry.result == result(request_id)
        assert store.duplicates == 0
    finally:
        if reader is not None:
            await reader.stop()
        await asyncio.to_thread(broker.stop)
