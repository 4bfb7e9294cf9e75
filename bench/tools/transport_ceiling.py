"""``python -m bench.tools.transport_ceiling``: how many records of each workload's size the
embedded Kafka moves at all, with no API, no worker and no computation.

For each record size, on a fresh broker and fresh 4-partition topics (``harness.topics``):

- aiokafka produce: one producer sends ``count`` records (acks=all) and waits for every ack;
- aiokafka echo: a consumer reads them back and a producer writes each one to a second topic
  (the worker's transport without its compute), from the first record read to the last ack,
  with the echo's event-loop lag (the floor under the worker's own at that record size);
- librdkafka produce and consume (confluent-kafka): the same, through the C client, to tell the
  broker's limit from aiokafka's.

The sizes are the binary request records calcstream's API writes: 100 floats (the worker path),
1,000 floats (W1) and two 300×300 matrices (W2). A workload that needs more records per second
of its size than these rates is bound by the transport on this machine, before any other cost.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import time
from dataclasses import dataclass

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from confluent_kafka import Consumer, Producer

from bench.harness.payloads import frame_bytes
from bench.harness.topics import create_topics, produce_all
from core.admin import wait_for_broker
from core.kafka import EmbeddedKafka
from core.looplag import LoopLagMonitor
from core.net import free_port

MAX_BYTES = 16 * 1024 * 1024


@dataclass(frozen=True)
class Size:
    """A record size and how many records to move at it."""

    label: str
    size: int
    count: int


SIZES = (
    Size("worker path (100 floats)", frame_bytes("sum_of_squares", 100), 50_000),
    Size("W1 (1,000 floats)", frame_bytes("sum_of_squares", 1_000), 20_000),
    Size("W2 (two 300×300 matrices)", frame_bytes("matmul", 2 * 300 * 300), 400),
)


def _aio_producer(bootstrap: str) -> AIOKafkaProducer:
    return AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=1,
                            max_batch_size=256 * 1024, max_request_size=MAX_BYTES)


async def aiokafka_rates(bootstrap: str, size: Size) -> tuple[float, float, float]:
    """(produce records/s, echo records/s, the echo's event-loop lag p99 in ms) through
    aiokafka; the lag is sampled as the worker samples its own (every 10 ms)."""
    source, sink = f"in-{size.size}", f"out-{size.size}"
    await create_topics(bootstrap, [source, sink])
    value = os.urandom(size.size)
    producer = _aio_producer(bootstrap)
    await producer.start()
    try:
        start = time.perf_counter()
        acks = [await producer.send(source, value, key=b"%d" % i) for i in range(size.count)]
        await asyncio.gather(*acks)
        produce = size.count / (time.perf_counter() - start)
        consumer = AIOKafkaConsumer(source, bootstrap_servers=bootstrap, group_id=None,
                                    auto_offset_reset="earliest", fetch_max_wait_ms=5,
                                    max_partition_fetch_bytes=MAX_BYTES,
                                    fetch_max_bytes=4 * MAX_BYTES)
        await consumer.start()
        lag = LoopLagMonitor()
        lag.start()
        try:
            echoed, pending, began = 0, [], None
            while echoed < size.count:
                for records in (await consumer.getmany(timeout_ms=200)).values():
                    began = began or time.perf_counter()
                    for r in records:
                        pending.append(await producer.send(sink, r.value, key=r.key))
                        echoed += 1
                if len(pending) >= 256:
                    await asyncio.gather(*pending)
                    pending.clear()
            await asyncio.gather(*pending)
            assert began is not None
            echo = size.count / (time.perf_counter() - began)
        finally:
            await lag.stop()
            await consumer.stop()
    finally:
        await producer.stop()
    return produce, echo, lag.percentile(99) * 1000


def librdkafka_rates(bootstrap: str, size: Size) -> tuple[float, float]:
    """(produce records/s, consume records/s) through librdkafka."""
    topic = f"rd-{size.size}"
    asyncio.run(create_topics(bootstrap, [topic]))
    producer = Producer({"bootstrap.servers": bootstrap, "acks": "all", "linger.ms": 1,
                         "enable.idempotence": False, "message.max.bytes": MAX_BYTES})
    value = os.urandom(size.size)
    start = time.perf_counter()
    produce_all(producer, topic, [value], size.count)
    produce = size.count / (time.perf_counter() - start)
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": f"transport-{size.size}",
                         "auto.offset.reset": "earliest", "enable.auto.commit": False,
                         "fetch.max.bytes": 4 * MAX_BYTES,
                         "max.partition.fetch.bytes": MAX_BYTES,
                         "receive.message.max.bytes": 8 * MAX_BYTES})
    consumer.subscribe([topic])
    try:
        read, began = 0, None
        deadline = time.monotonic() + 120
        while read < size.count and time.monotonic() < deadline:
            message = consumer.poll(1.0)
            if message is None or message.error():
                continue
            began = began or time.perf_counter()
            read += 1
        if read < size.count or began is None:
            raise RuntimeError(f"librdkafka read {read} of {size.count} records")
        consume = (size.count - 1) / (time.perf_counter() - began)
    finally:
        consumer.close()
    return produce, consume


def main() -> None:
    """Print one row per record size."""
    parser = argparse.ArgumentParser(prog="python -m bench.tools.transport_ceiling",
                                     description=__doc__)
    parser.add_argument("--scale", type=float, default=1.0, help="multiplies the record counts")
    args = parser.parse_args()
    print("| records | bytes | aiokafka produce /s | aiokafka echo /s | echo loop lag p99 ms "
          "| librdkafka produce /s | librdkafka consume /s | MB/s (librdkafka produce) |")
    print("|---|---|---|---|---|---|---|---|")
    for base in SIZES:
        size = Size(base.label, base.size, max(10, int(base.count * args.scale)))
        with EmbeddedKafka(free_port()) as broker:
            asyncio.run(wait_for_broker(broker.bootstrap_servers))
            produce, echo, lag_p99 = asyncio.run(aiokafka_rates(broker.bootstrap_servers, size))
        with EmbeddedKafka(free_port()) as broker:
            asyncio.run(wait_for_broker(broker.bootstrap_servers))
            rd_produce, rd_consume = librdkafka_rates(broker.bootstrap_servers, size)
        print(f"| {size.label} | {size.size:,} | {produce:,.0f} | {echo:,.0f} | {lag_p99:.1f} | "
              f"{rd_produce:,.0f} | {rd_consume:,.0f} | {rd_produce * size.size / 1e6:,.0f} |",
              flush=True)


if __name__ == "__main__":
    main()
