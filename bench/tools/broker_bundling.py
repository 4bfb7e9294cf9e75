"""``python -m bench.tools.broker_bundling``: the embedded Kafka's CPU per request when each
record carries one request, and when each record carries many.

Bulk moves one record per request in and one result record per request out (bench FINDINGS 10).
A record that carried a block of requests would cut every per-record cost, but not the cost of
the bytes. This measures which of the two the broker spends its CPU on: for each item size
(a W1 binary request frame, a W1 result document) and each bundle size (items per record), a
fresh broker takes ``--items`` items from librdkafka (the C client, so the client is not the
limit) and hands them back to a librdkafka consumer. The broker's CPU time for each phase,
divided by the items, is its cost per request; a bulk rate of N items/s on 2 cores leaves
2,000,000 / N µs of CPU per item for every process together.

Values are random float64 arrays, all different (as the bench's rows are within a record batch),
so ``--compression`` shows what a compressing producer gains on such data.
"""

from __future__ import annotations

import argparse
import asyncio
import time
from dataclasses import dataclass

import numpy as np
from confluent_kafka import OFFSET_BEGINNING, Consumer, Producer, TopicPartition

from bench.harness.payloads import frame_bytes
from bench.harness.procs import cpu_seconds
from bench.harness.topics import PARTITIONS, create_topics, produce_all
from core.admin import wait_for_broker
from core.kafka import EmbeddedKafka
from core.net import free_port

MAX_BYTES = 16 * 1024 * 1024
POOL_BYTES = 64 * 1024 * 1024
RESULT_BYTES = 330
"""About the size of a W1 ``CalcResult`` document (a scalar result and the worker's timings)."""


@dataclass(frozen=True)
class Cost:
    """The broker's CPU per item, in µs, and the wall-clock rates, for one measurement."""

    produce_us: float
    consume_us: float
    produce_per_s: float
    consume_per_s: float


def measure(bootstrap: str, broker_pid: int, item_bytes: int, bundle: int, items: int,
            compression: str = "none") -> Cost:
    """Produce ``items`` items of ``item_bytes`` in records of ``bundle`` items, read them back."""
    topic = f"bundle-{item_bytes}-{bundle}"
    asyncio.run(create_topics(bootstrap, [topic]))
    records = max(1, items // bundle)
    values = _values(item_bytes * bundle)
    producer = Producer({"bootstrap.servers": bootstrap, "acks": "all", "linger.ms": 1,
                         "enable.idempotence": False, "message.max.bytes": MAX_BYTES,
                         "compression.type": compression})
    cpu0, t0 = cpu_seconds(broker_pid), time.perf_counter()
    produce_all(producer, topic, values, records, PARTITIONS)
    cpu1, t1 = cpu_seconds(broker_pid), time.perf_counter()
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": topic,
                         "enable.auto.commit": False, "fetch.wait.max.ms": 10,
                         "fetch.max.bytes": 4 * MAX_BYTES,
                         "max.partition.fetch.bytes": MAX_BYTES,
                         "receive.message.max.bytes": 8 * MAX_BYTES})
    consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in range(PARTITIONS)])
    try:
        read, deadline = 0, time.monotonic() + 120
        while read < records and time.monotonic() < deadline:
            for message in consumer.consume(1000, 1.0):
                if not message.error():
                    read += 1
        if read < records:
            raise RuntimeError(f"librdkafka read {read} of {records} records")
        cpu2, t2 = cpu_seconds(broker_pid), time.perf_counter()
    finally:
        consumer.close()
    n = records * bundle
    return Cost(1e6 * (cpu1 - cpu0) / n, 1e6 * (cpu2 - cpu1) / n, n / (t1 - t0), n / (t2 - t1))


def _values(size: int) -> list[bytes]:
    """Distinct random float64 values of ``size`` bytes, 64 MB of them (at least two): far more
    than one record batch holds, so no batch repeats a value."""
    rng = np.random.default_rng(7)
    count = max(2, POOL_BYTES // size)
    return [rng.random(-(-size // 8)).tobytes()[:size] for _ in range(count)]


def main() -> None:
    """Print one row per item size and bundle size."""
    parser = argparse.ArgumentParser(prog="python -m bench.tools.broker_bundling",
                                     description=__doc__)
    parser.add_argument("--items", type=int, default=40_000, help="items per measurement")
    parser.add_argument("--bundles", type=int, nargs="+", default=[1, 8, 64],
                        help="items per record")
    parser.add_argument("--compression", default="none", choices=["none", "lz4", "zstd"],
                        help="the producer's compression.type")
    args = parser.parse_args()
    sizes = (("W1 request frame (1,000 floats)", frame_bytes("sum_of_squares", 1_000)),
             ("W1 result document", RESULT_BYTES))
    print(f"compression: {args.compression}")
    print("| items | bytes per item | items per record | broker µs per item: produce "
          "| consume | both | produce items/s | consume items/s |")
    print("|---|---|---|---|---|---|---|---|")
    for label, size in sizes:
        for bundle in args.bundles:
            with EmbeddedKafka(free_port()) as broker:
                asyncio.run(wait_for_broker(broker.bootstrap_servers))
                assert broker.pid is not None
                cost = measure(broker.bootstrap_servers, broker.pid, size, bundle, args.items,
                               args.compression)
            print(f"| {label} | {size:,} | {bundle} | {cost.produce_us:.1f} | "
                  f"{cost.consume_us:.1f} | {cost.produce_us + cost.consume_us:.1f} | "
                  f"{cost.produce_per_s:,.0f} | {cost.consume_per_s:,.0f} |", flush=True)


if __name__ == "__main__":
    main()
