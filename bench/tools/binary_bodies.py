"""``python -m bench.tools.binary_bodies``: W2 through the API with JSON bodies and with binary
ones, on one stack, one after the other.

W2 is a 300×300 ``matmul`` (A random, B the identity): 180,000 values, a 2.1 MB JSON body or
1.44 MB of raw float64 (``application/octet-stream``, op and args in the query). For each body
kind: one client in sequence (latency), then ``CLIENTS`` clients at once (results/s), every
answer checked (its first row is A's).
"""

from __future__ import annotations

import asyncio
import tempfile
import time
from pathlib import Path

import aiohttp
import numpy as np
import orjson

from bench.harness import payloads
from bench.harness.stack import CalcstreamStack
from bench.harness.stats import percentiles
from bench.runner import W2_ENV

SEQUENTIAL = 20
CLIENTS = 16
PER_CLIENT = 4
N = payloads.W2_N


def bodies() -> dict[str, tuple[bytes, dict[str, str], str, bytes]]:
    """Body kind → (body, headers, query, the answer's first values)."""
    a = np.random.default_rng(2).standard_normal((N, N))
    data = np.concatenate([a.ravel(), np.eye(N).ravel()])
    args = orjson.dumps({"m": N, "k": N, "n": N}).decode()
    first = orjson.dumps(a[0, :8], option=orjson.OPT_SERIALIZE_NUMPY)[:-1]
    prefix = b'"result":[' + first
    as_json = orjson.dumps({"op": "matmul", "data": data, "args": {"m": N, "k": N, "n": N}},
                           option=orjson.OPT_SERIALIZE_NUMPY)
    return {
        "JSON": (as_json, {"Content-Type": "application/json"}, "wait=30", prefix),
        "binary": (data.astype("<f8").tobytes(), {"Content-Type": "application/octet-stream"},
                   f"wait=30&op=matmul&args={args}", prefix),
    }


async def one(session: aiohttp.ClientSession, url: str, body: bytes, headers: dict[str, str],
              prefix: bytes) -> float:
    start = time.perf_counter()
    async with session.post(url, data=body, headers=headers) as r:
        raw = await r.read()
    if r.status != 200 or prefix not in raw:
        raise RuntimeError(f"answer {r.status}: {raw[:200]!r}")
    return (time.perf_counter() - start) * 1000


async def client(session: aiohttp.ClientSession, url: str, body: bytes,
                 headers: dict[str, str], prefix: bytes) -> None:
    for _ in range(PER_CLIENT):
        await one(session, url, body, headers, prefix)


async def main() -> None:
    """Print latency and throughput per body kind."""
    with tempfile.TemporaryDirectory(prefix="bench-binary-") as tmp:
        stack = CalcstreamStack(Path(tmp), "binary", env=W2_ENV)
        try:
            await stack.start()
            async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=120)) as session:
                for kind, (body, headers, query, prefix) in bodies().items():
                    url = f"{stack.url}/v1/calculations?{query}"
                    await one(session, url, body, headers, prefix)  # warm
                    times = [await one(session, url, body, headers, prefix)
                             for _ in range(SEQUENTIAL)]
                    p = percentiles(times)
                    started = time.perf_counter()
                    await asyncio.gather(*(client(session, url, body, headers, prefix)
                                           for _ in range(CLIENTS)))
                    rate = CLIENTS * PER_CLIENT / (time.perf_counter() - started)
                    print(f"W2 {kind:6} body {len(body) / 1e6:4.2f} MB  one client p50 "
                          f"{p['p50']:6.1f} ms p99 {p['p99']:6.1f} ms  {CLIENTS} clients "
                          f"{rate:5.1f} results/s", flush=True)
        finally:
            stack.stop()


if __name__ == "__main__":
    asyncio.run(main())
