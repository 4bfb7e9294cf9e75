"""``python -m bench.tools.produce_rate``: raw aiokafka produce rate against the embedded Kafka.

64 tasks each send a record and await its ack, back to back (what 64 API clients do), for each
record size and producer ``max_batch_size``; with the default 16 KB, a record larger than the
batch gets a batch of its own and ``send`` waits for the partition's previous batch to leave.
"""

from __future__ import annotations

import asyncio
import time

from aiokafka import AIOKafkaProducer

from bench.harness.stats import percentiles
from core.admin import ensure_topics, wait_for_broker
from core.kafka import EmbeddedKafka
from core.net import free_port
from core.settings import BrokerSettings

SIZES = (2_000, 19_000)
"""~100 and ~1,000 floats as JSON."""
BATCHES = (16_384, 262_144, 1_048_576)
"""aiokafka's default, and two larger batch sizes."""


async def rate(producer: AIOKafkaProducer, topic: str, size: int, seconds: float,
               tasks: int = 64) -> tuple[float, dict[str, float]]:
    """Acks per second and ack latency percentiles (ms)."""
    value = b"x" * size
    latencies: list[float] = []
    end = time.perf_counter() + seconds

    async def one(k: int) -> None:
        i = 0
        while time.perf_counter() < end:
            start = time.perf_counter()
            await (await producer.send(topic, value, key=f"{k}-{i}".encode()))
            latencies.append((time.perf_counter() - start) * 1000)
            i += 1

    t0 = time.perf_counter()
    await asyncio.gather(*(one(k) for k in range(tasks)))
    return len(latencies) / (time.perf_counter() - t0), percentiles(latencies)


async def main(seconds: float = 3.0) -> None:
    """Print one line per (record size, batch size)."""
    broker = EmbeddedKafka(free_port())
    broker.start()
    try:
        settings = BrokerSettings(bootstrap_servers=broker.bootstrap_servers)
        await wait_for_broker(broker.bootstrap_servers)
        await ensure_topics(settings)
        print("record bytes | max_batch_size | acks/s | ack p50 ms | ack p99 ms")
        for size in SIZES:
            for batch in BATCHES:
                producer = AIOKafkaProducer(**{**settings.producer_options(),
                                               "max_batch_size": batch})
                await producer.start()
                try:
                    per_s, lat = await rate(producer, settings.requests_topic, size, seconds)
                finally:
                    await producer.stop()
                print(f"{size:>12,} | {batch:>14,} | {per_s:>6,.0f} | {lat['p50']:>10.1f} | "
                      f"{lat['p99']:>10.1f}", flush=True)
    finally:
        broker.stop()


if __name__ == "__main__":
    asyncio.run(main())
