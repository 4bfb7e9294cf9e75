"""``python -m bench.tools.idle_latency``: one client, one request at a time, on a fresh idle stack.

The floor under every end-to-end figure: a submit that waits for its result, a submit that
returns at the broker's ack, and ``/healthz``, 200 requests each, in sequence.
"""

from __future__ import annotations

import asyncio
import tempfile
import time
from pathlib import Path

import aiohttp
import orjson

from bench.harness import payloads
from bench.harness.stack import CalcstreamStack
from bench.harness.stats import percentiles

JSON_HEADERS = {"Content-Type": "application/json"}
COUNT = 200


async def main() -> None:
    """Print p50/p99/max per request kind, and the worker's queue_ms of the waited results."""
    pool = payloads.w1_pool()
    with tempfile.TemporaryDirectory(prefix="bench-latency-") as tmp:
        stack = CalcstreamStack(Path(tmp), "latency")
        try:
            await stack.start()
            async with aiohttp.ClientSession() as session:
                queue_ms: list[float] = []
                for label, method, path in (
                        ("POST /v1/calculations?wait=30", "POST", "/v1/calculations?wait=30"),
                        ("POST /v1/calculations", "POST", "/v1/calculations"),
                        ("GET /healthz", "GET", "/healthz")):
                    times = []
                    for i in range(COUNT):
                        body = pool.bodies[i % len(pool.bodies)] if method == "POST" else None
                        start = time.perf_counter()
                        async with session.request(method, stack.url + path, data=body,
                                                   headers=JSON_HEADERS) as r:
                            raw = await r.read()
                        times.append((time.perf_counter() - start) * 1000)
                        if "wait" in path:
                            queue_ms.append(float(orjson.loads(raw)["queue_ms"]))
                    p = percentiles(times)
                    print(f"{label:32} p50 {p['p50']:6.1f} ms  p99 {p['p99']:6.1f} ms  "
                          f"max {p['max']:6.1f} ms")
                q = percentiles(queue_ms)
                print(f"{'worker queue_ms (waited results)':32} p50 {q['p50']:6.1f} ms  "
                      f"p99 {q['p99']:6.1f} ms")
        finally:
            stack.stop()


if __name__ == "__main__":
    asyncio.run(main())
