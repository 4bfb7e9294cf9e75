"""The worker path alone: 100-float requests produced straight to the request topic, results
read back from the reply topic, next to a raw aiokafka echo measured on the same backlog.

Each run fills a fresh topic first, then starts the consumer (the worker, then the echo, each
in its own group), so producing does not compete with consuming. Rates come from the reply
records' timestamps: (records - 1) / (last - first).
"""

from __future__ import annotations

import asyncio
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from bench.harness import payloads, profile
from bench.harness.procs import Child, cpu_seconds
from bench.harness.stack import BENCH_ENV, CalcstreamStack, entry_point, worker_metrics
from bench.harness.topics import PARTITIONS, create_topics
from core.net import free_port

POOL = 64


async def _fill(bootstrap: str, topic: str, count: int) -> list[float]:
    """Produce ``count`` JSON requests; return the pool's answers (row = index % POOL)."""
    matrix = payloads.rows(POOL, payloads.WORKER_PATH_SIZE, seed=4)
    data = [orjson.dumps(r, option=orjson.OPT_SERIALIZE_NUMPY) for r in matrix]
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=5,
                                max_batch_size=1024 * 1024, max_request_size=8 * 1024 * 1024)
    await producer.start()
    try:
        acks = []
        for i in range(count):
            rid = f"wp-{i}"
            value = b'{"id":"%s","op":"sum_of_squares","data":%s}' % (rid.encode(),
                                                                       data[i % POOL])
            acks.append(await producer.send(topic, value, key=rid.encode()))
            if len(acks) >= 20_000:
                await asyncio.gather(*acks)
                acks.clear()
        await asyncio.gather(*acks)
    finally:
        await producer.stop()
    return payloads.sum_of_squares(matrix)


async def _read_all(bootstrap: str, topic: str, count: int, limit_s: float) -> list[Any]:
    """Every record of ``topic`` (until ``count`` of them, or ``limit_s``)."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False,
                                auto_offset_reset="earliest", fetch_max_wait_ms=10,
                                isolation_level="read_committed",
                                max_partition_fetch_bytes=8 * 1024 * 1024)
    await consumer.start()
    records: list[Any] = []
    try:
        consumer.assign([TopicPartition(topic, p) for p in range(PARTITIONS)])
        deadline = time.monotonic() + limit_s
        while len(records) < count and time.monotonic() < deadline:
            for batch in (await consumer.getmany(timeout_ms=200, max_records=10_000)).values():
                records.extend(batch)
    finally:
        await consumer.stop()
    return records


def _rate(records: list[Any]) -> float:
    stamps = [r.timestamp for r in records]
    span = (max(stamps) - min(stamps)) / 1000.0 if stamps else 0.0
    return (len(records) - 1) / span if span > 0 else 0.0


async def run(stack: CalcstreamStack, count: int,
              profile_dir: Path | None = None) -> dict[str, Any]:
    """One run on a stack's broker, with its settings."""
    return await measure(stack.bootstrap, stack.env(), stack.log_dir, count, profile_dir)


async def measure(bootstrap: str, base_env: dict[str, str], log_dir: Path | None,
                  count: int, profile_dir: Path | None = None) -> dict[str, Any]:
    """Fill fresh topics on ``bootstrap``, drain them with the worker, then with the echo."""
    suffix = uuid.uuid4().hex[:8]
    requests, results, echoed, dlq = (f"wp.{suffix}.{t}" for t in
                                      ("requests", "results", "echo", "dlq"))
    await create_topics(bootstrap, [requests, results, echoed, dlq, f"{requests}.attempts"])
    t0 = time.perf_counter()
    answers = await _fill(bootstrap, requests, count)
    fill_s = time.perf_counter() - t0
    env = {**BENCH_ENV, **base_env, "CALCSTREAM_BOOTSTRAP_SERVERS": bootstrap,
           "CALCSTREAM_REQUESTS_TOPIC": requests, "CALCSTREAM_RESULTS_TOPIC": results,
           "CALCSTREAM_DLQ_TOPIC": dlq, "CALCSTREAM_GROUP_ID": f"wp-worker-{suffix}",
           "CALCSTREAM_CREATE_TOPICS": "false"}
    port = free_port()
    worker = Child(f"wp-worker-{suffix}", entry_point("consumer"),
                   {**env, "CALCSTREAM_METRICS_PORT": str(port)}, log_dir).start()
    profiles: dict[str, Any] = {}
    try:
        await asyncio.to_thread(worker.wait_port, port, 60)
        cpu_before = cpu_seconds(worker.pid)
        sampling = _sample(worker, "worker", profile_dir, suffix)
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline:
            if (await worker_metrics(port)).get("calcstream_worker_records_total", 0) >= count:
                break
            await asyncio.sleep(0.2)
        worker_cpu_s = cpu_seconds(worker.pid) - cpu_before
        profiles.update(await sampling)
    finally:
        worker.stop()
    got = await _read_all(bootstrap, results, count, 120)
    wrong = 0
    ids = set()
    for r in got:
        doc = orjson.loads(r.value)
        ids.add(doc["id"])
        row = int(doc["id"][3:]) % POOL
        wrong += doc["status"] != "ok" or not payloads.close(doc["result"], answers[row])
    echo = Child(f"wp-echo-{suffix}", [sys.executable, "-m", "bench.peers.echo"],
                 {**env, "CALCSTREAM_RESULTS_TOPIC": echoed,
                  "CALCSTREAM_GROUP_ID": f"wp-echo-{suffix}", "BENCH_ECHO_COUNT": str(count)},
                 log_dir).start()
    try:
        sampling = _sample(echo, "echo", profile_dir, suffix)
        await asyncio.to_thread(_wait_exit, echo, 300)
        profiles.update(await sampling)
    finally:
        echo.stop()
    echo_records = await _read_all(bootstrap, echoed, count, 120)
    worker_rate, echo_rate = _rate(got), _rate(echo_records)
    return {"records": count, "fill_seconds": fill_s, "results": len(got),
            "unique_ids": len(ids), "wrong": wrong, "worker_per_s": worker_rate,
            # From its metrics port answering to its last record: the drain, on one core.
            "worker_cpu_us_per_record": worker_cpu_s / count * 1e6,
            "echo_records": len(echo_records), "echo_per_s": echo_rate,
            "worker_vs_echo": worker_rate / echo_rate if echo_rate else 0.0,
            **({"profile": profiles} if profiles else {})}


def _sample(child: Child, name: str, profile_dir: Path | None,
            suffix: str) -> asyncio.Future[dict[str, Any]]:
    """py-spy ``child`` for 5 s from its group join on (nothing without ``profile_dir``)."""

    async def sample() -> dict[str, Any]:
        if profile_dir is None:
            return {}
        await asyncio.sleep(3.0)  # the group join; the backlog is drained after it
        paths = await profile.record({name: child.pid}, 5.0, profile_dir, f"worker-path-{suffix}")
        return {n: {"file": f"profiles/{p.name}", "hottest": profile.hottest(p)}
                for n, p in paths.items()}

    return asyncio.ensure_future(sample())


def _wait_exit(child: Child, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while child.alive() and time.monotonic() < deadline:
        time.sleep(0.1)
