"""A raw aiokafka round trip at W1's fixed rate: the floor under "1,000 req/s offered".

The bench process produces W1's request bodies to a fresh request topic at the fixed rate,
open loop, with the API's producer settings; ``bench.peers.echo`` (the worker's consumer and
producer settings, no parsing, no compute) sends each record on to a fresh reply topic; and
the bench process reads that topic with the API's result-reader settings. A record's latency
runs from its scheduled send to its echo's arrival, as a fixed-rate request's does from its
scheduled start to its answer: the same two Kafka hops as calcstream's, without HTTP, JSON, the
compute and the stores. Every echo is compared with the body sent.
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
import time
import uuid
from pathlib import Path
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from bench.harness.config import Plan
from bench.harness.payloads import BodyPool
from bench.harness.procs import Child
from bench.harness.stack import BENCH_ENV, CalcstreamStack, api_settings
from bench.harness.stats import percentiles
from bench.harness.topics import PARTITIONS, create_topics

_WARM_KEY = b"warm"
_JOIN_S = 60.0  # the echo's group join, at most
_DRAIN_S = 60.0  # after the last send, as loadgen.fixed_rate waits for the last answers


async def run(stack: CalcstreamStack, pool: BodyPool, plan: Plan) -> dict[str, Any]:
    """``plan.fixed_rate`` records/s for ``plan.fixed_seconds`` through the echo, on the
    stack's broker with its settings; the same figures as ``fixed_rate.run``."""
    return await measure(stack.bootstrap, stack.env(), stack.log_dir, pool, plan.fixed_rate,
                         plan.fixed_seconds, plan.warmup_seconds)


async def measure(bootstrap: str, base_env: dict[str, str], log_dir: Path | None,
                  pool: BodyPool, rate: float, seconds: float,
                  warmup_s: float = 0.0) -> dict[str, Any]:
    """``rate`` records/s for ``seconds`` through an echo on fresh topics of ``bootstrap``,
    after ``warmup_s`` of the same, not counted."""
    suffix = uuid.uuid4().hex[:8]
    requests, replies = f"er.{suffix}.requests", f"er.{suffix}.replies"
    await create_topics(bootstrap, [requests, replies])
    warm_count, count = int(rate * warmup_s), int(rate * seconds)
    env = {**BENCH_ENV, **base_env, "CALCSTREAM_BOOTSTRAP_SERVERS": bootstrap,
           "CALCSTREAM_REQUESTS_TOPIC": requests, "CALCSTREAM_RESULTS_TOPIC": replies,
           "CALCSTREAM_GROUP_ID": f"er-echo-{suffix}"}
    settings = api_settings(env)
    echo = Child(f"er-echo-{suffix}", [sys.executable, "-m", "bench.peers.echo"],
                 {**env, "BENCH_ECHO_COUNT": str(warm_count + count + 1)}, log_dir).start()
    producer = AIOKafkaProducer(**settings.producer_options())
    reader = AIOKafkaConsumer(**settings.reader_options())
    await producer.start()
    await reader.start()
    try:
        reader.assign([TopicPartition(replies, p) for p in range(PARTITIONS)])
        arrived: dict[bytes, tuple[float, bytes]] = {}
        warm, every = asyncio.Event(), asyncio.Event()
        expected = warm_count  # records arrived when ``every`` is set

        async def read() -> None:
            while True:
                fetched = await reader.getmany(timeout_ms=100, max_records=1_000)
                now = time.perf_counter()
                for records in fetched.values():
                    for record in records:
                        if record.key == _WARM_KEY:
                            warm.set()
                        elif record.key is not None and record.value is not None:
                            arrived[record.key] = (now, record.value)
                if len(arrived) >= expected:
                    every.set()

        reading = asyncio.create_task(read())
        try:
            await (await producer.send(requests, pool.bodies[0], key=_WARM_KEY))
            await asyncio.wait_for(warm.wait(), _JOIN_S)
            warmup: dict[str, Any] = {}
            if warm_count:
                w = await _offer(producer, requests, pool, rate, range(warm_count), arrived,
                                 every)
                warmup = {"warmup_s": warmup_s, "warmup_latency_ms": w["latency_ms"],
                          "warmup_not_right": w["offered"] - w["answered"]}
            expected = warm_count + count
            every.clear()
            measured = await _offer(producer, requests, pool, rate,
                                    range(warm_count, warm_count + count), arrived, every)
            return {**warmup, **measured}
        finally:
            reading.cancel()
            await asyncio.gather(reading, return_exceptions=True)
    finally:
        await producer.stop()
        await reader.stop()
        echo.stop()


async def _offer(producer: AIOKafkaProducer, topic: str, pool: BodyPool, rate: float,
                 numbers: range, arrived: dict[bytes, tuple[float, bytes]], every: asyncio.Event,
                 ) -> dict[str, Any]:
    """Records ``numbers`` at ``rate``; the figures once every one arrived (bounded)."""
    bodies = pool.bodies
    count = len(numbers)
    keys = [i.to_bytes(4, "big") for i in numbers]
    acks = []
    t0 = time.perf_counter()
    for i in range(count):
        delay = t0 + i / rate - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        acks.append(await producer.send(topic, bodies[i % len(bodies)], key=keys[i]))
    sent = await asyncio.gather(*acks, return_exceptions=True)
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(every.wait(), _DRAIN_S)
    elapsed = time.perf_counter() - t0
    latencies, wrong = [], 0
    for i, key in enumerate(keys):
        got = arrived.get(key)
        if got is None:
            continue
        if got[1] == bodies[i % len(bodies)]:
            latencies.append((got[0] - (t0 + i / rate)) * 1000)
        else:
            wrong += 1
    return {"offered": count, "answered": len(latencies), "wrong": wrong,
            "statuses": {}, "failed": count - len(latencies) - wrong,
            "unacknowledged": sum(isinstance(s, BaseException) for s in sent),
            "seconds": elapsed, "latency_ms": percentiles(latencies),
            "latencies_ms": sorted(round(x, 3) for x in latencies)}
