"""API memory while its result store holds 1,000,000 results (the store at its count cap).

The stack runs with ``CALCSTREAM_RESULT_STORE_MAX=1000000`` and a byte cap high enough that the
count binds. Tiny requests (one float each, as ``.npy`` rows) fill it; the API's RSS is read
from /proc once the store is full, the last result is in and the API has been at rest for
``REST_S`` (it gives the memory malloc holds free back every ``CALCSTREAM_MALLOC_TRIM_S``, 2 s:
what it holds then is what the results cost, not the last posts' garbage).
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import aiohttp
import numpy as np
import orjson

from bench.harness import payloads
from bench.harness.procs import rss_bytes
from bench.harness.stack import CalcstreamStack

CAP = 1_000_000
ENV = {"CALCSTREAM_RESULT_STORE_MAX": str(CAP),
       "CALCSTREAM_RESULT_STORE_MAX_BYTES": str(8 * 1024**3)}
ROWS_PER_POST = 20_000
RETRIES = 10
REST_S = 5.0


async def _post(session: aiohttp.ClientSession, url: str, body: bytes, k: int,
                rows: int) -> int:
    """Post rows with id prefix ``m<k>``; a 503 is retried (the prefix makes a re-post
    idempotent: rows the broker already took count as duplicates). Returns the retries."""
    for attempt in range(RETRIES):
        async with session.post(url, params={"op": "sum_of_squares", "id_prefix": f"m{k}",
                                             "ids": "false"},
                                data=body, headers={"Content-Type": "application/x-npy"}) as r:
            doc = orjson.loads(await r.read())
            if r.status == 202 and doc["accepted"] == rows:
                return attempt
            if r.status != 503:
                raise RuntimeError(f"batch post answered {r.status}: {doc}")
        await asyncio.sleep(float(r.headers.get("Retry-After", "1")))
    raise RuntimeError(f"batch post still answered 503 after {RETRIES} tries")


async def run(stack: CalcstreamStack, results: int) -> dict[str, Any]:
    """Submit ``results`` one-float requests; read the API's RSS once all are remembered."""
    api = stack.api
    idle_rss, _ = rss_bytes(api.pid)
    rows = min(ROWS_PER_POST, results)
    body = payloads.npy(np.arange(1, rows + 1, dtype=np.float64).reshape(-1, 1))
    posts = -(-results // rows)
    t0 = time.perf_counter()
    last_id = ""
    retries = 0
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=600)) as session:
        for k in range(posts):
            retries += await _post(session, f"{stack.url}/v1/calculations/batch", body, k, rows)
            last_id = f"m{k}-{rows - 1}"
        posted = time.perf_counter() - t0
        deadline = time.monotonic() + 600
        state: dict[str, Any] = {}
        while time.monotonic() < deadline:
            async with session.get(f"{stack.url}/v1/calculations/{last_id}") as resp:
                state = orjson.loads(await resp.read())
            if state.get("status") == "ok":
                break
            await asyncio.sleep(0.5)
        async with session.get(f"{stack.url}/readyz") as resp:
            ready = orjson.loads(await resp.read())
    done = time.perf_counter() - t0
    await asyncio.sleep(REST_S)
    rss, peak = rss_bytes(api.pid)
    return {"submitted": posts * rows, "remembered": ready.get("results_remembered"),
            "cap": CAP, "last_status": state.get("status"), "post_seconds": posted,
            "retried_posts": retries,
            "seconds": done, "idle_rss_mb": idle_rss / 2**20, "rss_mb": rss / 2**20,
            "peak_rss_mb": peak / 2**20,
            "bytes_per_result": (rss - idle_rss) / max(1, ready.get("results_remembered", 1))}
