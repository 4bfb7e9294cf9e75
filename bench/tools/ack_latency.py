"""``python -m bench.tools.ack_latency``: how long one produce takes to be acknowledged, one at
a time, from aiokafka (the services' client) and from librdkafka (confluent-kafka), on a fresh
broker.

Each hop of a request (API → worker → API) is a produce and a fetch; with nothing else running,
this is the floor under a hop, and the difference between the two clients is the Python
client's own work per request.
"""

from __future__ import annotations

import asyncio
import time
from functools import partial

import uvloop
from aiokafka import AIOKafkaProducer
from confluent_kafka import Producer

from bench.harness.topics import create_topics
from core.kafka import EmbeddedKafka
from core.net import free_port

WARMUP, COUNT = 50, 300


def _quantiles(ms: list[float]) -> str:
    ms = sorted(ms)
    return f"p50 {ms[len(ms) // 2]:.2f} ms, p90 {ms[len(ms) * 9 // 10]:.2f} ms"


async def aiokafka_acks(bootstrap: str, topic: str, linger_ms: int) -> list[float]:
    """Milliseconds from ``send`` to ack, one record at a time (idempotent, acks=all)."""
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=linger_ms,
                                enable_idempotence=True)
    await producer.start()
    try:
        out = []
        for i in range(WARMUP + COUNT):
            started = time.perf_counter()
            await producer.send_and_wait(topic, b"x", partition=0)
            if i >= WARMUP:
                out.append((time.perf_counter() - started) * 1000)
        return out
    finally:
        await producer.stop()


def _acked(done: list[bool], error: object, message: object) -> None:
    done.append(True)


def librdkafka_acks(bootstrap: str, topic: str) -> list[float]:
    """The same through librdkafka (linger 0)."""
    producer = Producer({"bootstrap.servers": bootstrap, "acks": "all", "linger.ms": 0,
                         "enable.idempotence": True})
    out = []
    for i in range(WARMUP + COUNT):
        done: list[bool] = []
        started = time.perf_counter()
        producer.produce(topic, b"x", partition=0, on_delivery=partial(_acked, done))
        while not done:
            producer.poll(0.0005)
        if i >= WARMUP:
            out.append((time.perf_counter() - started) * 1000)
    return out


def main() -> None:
    """Print the acknowledgement latency of each client."""
    with EmbeddedKafka(free_port()) as broker:
        bootstrap = broker.bootstrap_servers
        asyncio.run(create_topics(bootstrap, ["acks"]))
        for linger in (0, 1):
            print(f"aiokafka (uvloop), linger {linger} ms: "
                  f"{_quantiles(uvloop.run(aiokafka_acks(bootstrap, 'acks', linger)))}")
        print(f"librdkafka, linger 0 ms: {_quantiles(librdkafka_acks(bootstrap, 'acks'))}")


if __name__ == "__main__":
    main()
