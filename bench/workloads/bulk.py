"""W1 bulk: 200,000 requests through ``POST /v1/calculations/batch``, as JSON and as ``.npy``.

Bodies are posted a few at a time; one WebSocket observes every result and checks it against
the exact answer of its row (each answer lists the ids in row order; ids are the server's, as
a client that sends no id or id_prefix gets). Items/s = right results / (last result - first
post). CPU per item is each process's CPU time over the measurement divided by the right
results: the broker, the API, the worker, and this process (posting and observing).
"""

from __future__ import annotations

import asyncio
import os
import time
import uuid
from typing import Any

import aiohttp
import numpy as np
import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from bench.harness import payloads
from bench.harness.config import Plan
from bench.harness.observer import Observer
from bench.harness.payloads import close
from bench.harness.procs import CpuMeter
from bench.harness.stack import CalcstreamStack, api_settings, metrics_at
from bench.harness.stats import bucket_delta, histogram_quantile
from bench.harness.topics import PARTITIONS, create_topics
from producer_api import intake

POOL_ROWS = 1_000


class _Expect:
    """id → the row's answer, filled as batch answers come back (results may come first)."""

    def __init__(self, answers: list[float]) -> None:
        self.answers = answers
        self.row_of: dict[str, int] = {}
        self.early: dict[str, float] = {}
        self.wrong = 0

    def check(self, doc: dict[str, Any]) -> bool:
        if doc.get("status") != "ok":
            return False
        rid, value = str(doc["id"]), float(doc["result"])
        row = self.row_of.get(rid)
        if row is None:
            self.early[rid] = value
            return True
        return close(value, self.answers[row])

    def learn(self, ids: list[str | None], offset: int) -> None:
        for i, rid in enumerate(ids):
            if rid is None:
                continue
            row = (offset + i) % POOL_ROWS
            self.row_of[rid] = row
            early = self.early.pop(rid, None)
            if early is not None and not close(early, self.answers[row]):
                self.wrong += 1


async def run(stack: CalcstreamStack, plan: Plan, fmt: str) -> dict[str, Any]:
    """Post ``plan.bulk_items`` requests as ``fmt`` (json or npy); observe every result."""
    matrix = payloads.rows(POOL_ROWS, payloads.W1_SIZE, seed=3)
    expect = _Expect(payloads.sum_of_squares(matrix))
    chunk = plan.bulk_json_chunk if fmt == "json" else plan.bulk_npy_chunk
    chunk = min(chunk, plan.bulk_items)
    reps = -(-chunk // POOL_ROWS)
    block = (matrix if reps == 1 else np.tile(matrix, (reps, 1)))[:chunk]
    if fmt == "json":
        body, ctype = payloads.json_batch(block), "application/json"
    else:
        body, ctype = payloads.npy(block), "application/x-npy"
    chunks = -(-plan.bulk_items // chunk)
    total = chunks * chunk
    ws_url = stack.url.replace("http://", "ws://") + "/v1/ws"
    accepted = rejected = 0
    gate = asyncio.Semaphore(plan.bulk_posts_in_flight)
    timeout = aiohttp.ClientTimeout(total=600)
    lag_key = "calcstream_api_event_loop_lag_seconds_bucket"
    lag_before = (await metrics_at(f"{stack.url}/metrics")).get(lag_key)
    async with Observer(ws_url, expect.check) as observer, aiohttp.ClientSession(
            timeout=timeout) as session:

        async def post(k: int) -> None:
            nonlocal accepted, rejected
            async with gate:
                url = f"{stack.url}/v1/calculations/batch"
                params = {"op": "sum_of_squares"} if fmt == "npy" else None
                async with session.post(url, data=body, params=params,
                                        headers={"Content-Type": ctype}) as resp:
                    doc = orjson.loads(await resp.read())
                    if resp.status != 202:
                        raise RuntimeError(f"batch post answered {resp.status}: {doc}")
            accepted += doc["accepted"]
            rejected += doc["rejected"]
            expect.learn(doc["ids"], 0)

        meter = CpuMeter({**stack.pids(), "client": os.getpid()}).start()
        t0 = time.perf_counter()
        await asyncio.gather(*(post(k) for k in range(chunks)))
        posted = time.perf_counter() - t0
        complete = await observer.wait_for(total, quiet_s=10.0, limit_s=600.0)
        span = (observer.last or t0) - t0
        wrong = observer.wrong + expect.wrong + len(expect.early)
        cpu = meter.per_item(observer.ok - len(expect.early))
    lag = bucket_delta((await metrics_at(f"{stack.url}/metrics"))[lag_key], lag_before)
    return {"api_loop_lag_p99_ms_at_most": histogram_quantile(lag, 0.99) * 1000,
            "api_loop_lag_max_ms_at_most": histogram_quantile(lag, 1.0) * 1000,
            "format": fmt, "items": total, "accepted": accepted, "rejected": rejected,
            "ok": observer.ok - len(expect.early), "wrong": wrong, "dropped": observer.dropped,
            "complete": complete, "post_seconds": posted, "seconds": span,
            "ingest_per_s": accepted / posted if posted else 0.0,
            "ok_per_s": (observer.ok - len(expect.early)) / span if span > 0 else 0.0,
            "body_bytes": len(body), "per_post": chunk, "cpu_us_per_item": cpu}


async def raw(stack: CalcstreamStack, plan: Plan) -> dict[str, Any]:
    """The records a ``.npy`` bulk run publishes, produced and consumed straight through
    aiokafka on the stack's broker: one Kafka hop, the floor under the bulk path.

    The rows of one post become records as the API makes them (``intake.from_npy``: id key,
    binary frame, headers); the bench process produces them as many times as the bulk run posts
    them, with the API's producer settings and acks awaited a post at a time, while it reads the
    topic with the API's reader settings. Items/s = records read back equal to those sent /
    (last read - first send)."""
    return await raw_round_trip(stack.bootstrap, stack.env(), {"broker": stack.pids()["broker"]},
                                plan.bulk_npy_chunk, plan.bulk_items)


async def raw_round_trip(bootstrap: str, env: dict[str, str], pids: dict[str, int],
                         chunk: int, items: int) -> dict[str, Any]:
    """``items`` records of ``chunk``-row posts through a fresh topic of ``bootstrap`` (``raw``);
    CPU per item of the processes in ``pids`` and this one."""
    matrix = payloads.rows(POOL_ROWS, payloads.W1_SIZE, seed=3)
    chunk = min(chunk, items)
    block = np.tile(matrix, (-(-chunk // POOL_ROWS), 1))[:chunk]
    settings = api_settings({**env, "CALCSTREAM_BOOTSTRAP_SERVERS": bootstrap})
    rows, _ = intake.from_npy(payloads.npy(block), "sum_of_squares", {}, None,
                              settings.max_array_length, time.time())
    records = [row for row in rows if isinstance(row, intake.Prepared)]
    chunks = -(-items // chunk)
    total = chunks * len(records)
    topic = f"bulk-raw.{uuid.uuid4().hex[:8]}"
    await create_topics(bootstrap, [topic])
    producer = AIOKafkaProducer(**settings.producer_options())
    reader = AIOKafkaConsumer(**settings.reader_options())
    await producer.start()
    await reader.start()
    sent = {r.key: r.value for r in records}
    read = wrong = 0
    last = 0.0
    done = asyncio.Event()

    async def consume() -> None:
        nonlocal read, wrong, last
        while True:
            for batch in (await reader.getmany(timeout_ms=200, max_records=10_000)).values():
                for record in batch:
                    if record.key is not None and sent.get(record.key) == record.value:
                        read += 1
                    else:
                        wrong += 1
                last = time.perf_counter()
            if read + wrong >= total:
                done.set()

    try:
        reader.assign([TopicPartition(topic, p) for p in range(PARTITIONS)])
        reading = asyncio.create_task(consume())
        meter = CpuMeter({**pids, "client": os.getpid()}).start()
        t0 = time.perf_counter()
        for _ in range(chunks):
            acks = [await producer.send(topic, r.value, key=r.key, headers=r.headers)
                    for r in records]
            await asyncio.gather(*acks)
        produced = time.perf_counter() - t0
        complete = True
        try:
            await asyncio.wait_for(done.wait(), 120)
        except TimeoutError:
            complete = False
        cpu = meter.per_item(read)
        reading.cancel()
        await asyncio.gather(reading, return_exceptions=True)
    finally:
        await producer.stop()
        await reader.stop()
    span = last - t0
    return {"format": "raw_npy", "items": total, "accepted": total, "ok": read, "wrong": wrong,
            "dropped": total - read - wrong, "complete": complete, "post_seconds": produced,
            "seconds": span, "ingest_per_s": total / produced if produced else 0.0,
            "ok_per_s": read / span if span > 0 else 0.0, "per_post": len(records),
            "cpu_us_per_item": cpu}
