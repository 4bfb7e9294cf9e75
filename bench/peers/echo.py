"""``python -m bench.peers.echo``: raw aiokafka consume → produce, no parsing, no compute.

The transport limit for the worker path: the worker's own client settings (group, fetch wait,
acks=all), a batch fetched, every record sent on to the reply topic, acks awaited, offsets
committed. Exits after ``BENCH_ECHO_COUNT`` records or on SIGTERM.
"""

from __future__ import annotations

import asyncio
import os
import signal

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from consumer.settings import WorkerSettings


async def echo(settings: WorkerSettings, count: int) -> None:
    """Echo ``count`` records from the request topic to the result topic."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    producer = AIOKafkaProducer(**settings.producer_options())
    consumer = AIOKafkaConsumer(settings.requests_topic, **settings.consumer_options())
    await producer.start()
    await consumer.start()
    seen = 0
    try:
        while seen < count and not stop.is_set():
            fetched = await consumer.getmany(timeout_ms=100,
                                             max_records=settings.max_batch_size)
            if not fetched:
                continue
            acks = [await producer.send(settings.results_topic, r.value, key=r.key)
                    for records in fetched.values() for r in records]
            await asyncio.gather(*acks)
            await consumer.commit()
            seen += len(acks)
    finally:
        await consumer.stop()
        await producer.stop()


def main() -> None:
    """Entry point: the worker's settings from the environment."""
    import uvloop

    uvloop.run(echo(WorkerSettings(), int(os.environ.get("BENCH_ECHO_COUNT", "0"))))


if __name__ == "__main__":
    main()
