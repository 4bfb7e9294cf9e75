"""A broker restart that loses every topic (the embedded broker keeps nothing on disk)."""

from __future__ import annotations

import asyncio
import contextlib

from aiokafka.admin import AIOKafkaAdminClient

from calcstream.broker import EmbeddedBroker, free_port
from consumer.admin import wait_for_broker
from consumer.worker import Worker
from schemas.topics import Topics
from tests.kafka import Deployment, TopicReader, create_topics, produce, request_json, unique


async def test_worker_recreates_topics_and_resumes_after_a_broker_reset() -> None:
    broker = EmbeddedBroker(free_port())
    broker.start()
    suffix = unique("reset")
    dep = Deployment(broker.bootstrap_servers,
                     Topics(f"rq-{suffix}", f"rs-{suffix}", f"dl-{suffix}"), f"g-{suffix}", 2)
    try:
        await create_topics(dep.bootstrap, dep.topics.all(), dep.partitions)
        worker = Worker(dep.worker_settings())
        await worker.start()
        run = asyncio.create_task(worker.run())
        try:
            await produce(dep.bootstrap, dep.topics.requests,
                          [(b"before", request_json("before", "sum", [1, 2]))])
            async with TopicReader(dep.bootstrap, dep.topics.results) as reader:
                await reader.read_count(1)

            broker.kill()
            broker.start()
            await wait_for_broker(dep.bootstrap)
            loop = asyncio.get_running_loop()
            restarted = loop.time()
            # The worker notices the empty broker and re-creates its topics; then it consumes.
            admin = AIOKafkaAdminClient(bootstrap_servers=dep.bootstrap)
            await admin.start()
            try:
                async with asyncio.timeout(10):
                    # No event exists for "the worker re-created its topics": poll the broker.
                    while not set(dep.topics.all()) <= set(await admin.list_topics()):  # noqa: ASYNC110
                        await asyncio.sleep(0.1)
            finally:
                await admin.close()
            await produce(dep.bootstrap, dep.topics.requests,
                          [(b"after", request_json("after", "sum", [3, 4]))])
            async with TopicReader(dep.bootstrap, dep.topics.results) as reader:
                (record,) = await reader.read_count(1, timeout=15)
            assert b'"after"' in record.value
            assert loop.time() - restarted < 15
        finally:
            worker.request_stop()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(run, 20)
            await worker.stop()
    finally:
        broker.stop()
