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
from typing import Any

import aiohttp
import numpy as np
import orjson

from bench.harness import payloads
from bench.harness.config import Plan
from bench.harness.observer import Observer
from bench.harness.payloads import close
from bench.harness.procs import CpuMeter
from bench.harness.stack import CalcstreamStack, metrics_at
from bench.harness.stats import bucket_delta, histogram_quantile

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
