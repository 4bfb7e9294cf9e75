"""``python -m bench.tools.binary_bodies``: W2 through the API with JSON bodies, with binary
ones, and with binary bodies and binary results, on one stack, one after the other.

W2 is a 300×300 ``matmul`` (A random, B the identity): 180,000 values, a 2.1 MB JSON body or
1.44 MB of raw float64 (``application/octet-stream``, op and args in the query); its result is
1.7 MB of JSON, or a 720 KB ``.npy`` file for ``Accept: application/x-npy``. The inline peer
(``bench.peers.inline``: NumPy in ``async def``, one process) takes the JSON body, by the same
client, before them. For each: one client in sequence (latency), then ``CLIENTS`` clients at
once (results/s), every answer checked (its first row is A's).
"""

from __future__ import annotations

import asyncio
import io
import os
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import aiohttp
import numpy as np
import orjson

from bench.harness import payloads
from bench.harness.procs import CpuMeter
from bench.harness.stack import CalcstreamStack
from bench.harness.stats import percentiles
from bench.harness.targets import PeerSet
from bench.runner import W2_ENV

SEQUENTIAL = 20
CLIENTS = 16
PER_CLIENT = 4
N = payloads.W2_N


Check = Callable[[bytes], bool]


def bodies() -> dict[str, tuple[bytes, dict[str, str], str, Check]]:
    """Kind → (body, headers, query, what a right answer passes)."""
    a = np.random.default_rng(2).standard_normal((N, N))
    data = np.concatenate([a.ravel(), np.eye(N).ravel()])
    args = orjson.dumps({"m": N, "k": N, "n": N}).decode()
    first = orjson.dumps(a[0, :8], option=orjson.OPT_SERIALIZE_NUMPY)[:-1]
    prefix = b'"result":[' + first
    as_json = orjson.dumps({"op": "matmul", "data": data, "args": {"m": N, "k": N, "n": N}},
                           option=orjson.OPT_SERIALIZE_NUMPY)
    raw = data.astype("<f8").tobytes()
    binary_query = f"wait=30&op=matmul&args={args}"
    octets = {"Content-Type": "application/octet-stream"}

    def json_answer(answer: bytes) -> bool:
        return prefix in answer

    def npy_answer(answer: bytes) -> bool:
        return bool(np.array_equal(np.load(io.BytesIO(answer))[0], a[0]))

    return {
        "JSON": (as_json, {"Content-Type": "application/json"}, "wait=30", json_answer),
        "binary": (raw, octets, binary_query, json_answer),
        "binary+npy": (raw, {**octets, "Accept": "application/x-npy"}, binary_query,
                       npy_answer),
    }


async def one(session: aiohttp.ClientSession, url: str, body: bytes, headers: dict[str, str],
              check: Check) -> float:
    start = time.perf_counter()
    async with session.post(url, data=body, headers=headers) as r:
        raw = await r.read()
    if r.status != 200 or not check(raw):
        raise RuntimeError(f"answer {r.status}: {raw[:200]!r}")
    return (time.perf_counter() - start) * 1000


async def client(session: aiohttp.ClientSession, url: str, body: bytes,
                 headers: dict[str, str], check: Check) -> None:
    for _ in range(PER_CLIENT):
        await one(session, url, body, headers, check)


async def measure(session: aiohttp.ClientSession, name: str, url: str, body: bytes,
                  headers: dict[str, str], check: Check, meter: CpuMeter) -> None:
    """Print one kind's latency, one client at a time, its rate with CLIENTS at once, and the
    CPU each metered process spent per result at that rate."""
    await one(session, url, body, headers, check)  # warm
    times = [await one(session, url, body, headers, check) for _ in range(SEQUENTIAL)]
    p = percentiles(times)
    started = time.perf_counter()
    meter.start()
    await asyncio.gather(*(client(session, url, body, headers, check) for _ in range(CLIENTS)))
    rate = CLIENTS * PER_CLIENT / (time.perf_counter() - started)
    cpu = "  ".join(f"{who} {us / 1000:.1f}" for who, us in
                    meter.per_item(CLIENTS * PER_CLIENT).items())
    print(f"W2 {name:21} body {len(body) / 1e6:4.2f} MB  one client p50 {p['p50']:6.1f} ms "
          f"p99 {p['p99']:6.1f} ms  {CLIENTS} clients {rate:5.1f} results/s  CPU ms per "
          f"result: {cpu}", flush=True)


async def main() -> None:
    """Print latency and throughput: the inline peer, then calcstream per kind."""
    with tempfile.TemporaryDirectory(prefix="bench-binary-") as tmp:
        stack = CalcstreamStack(Path(tmp), "binary", env=W2_ENV)
        peers = PeerSet(Path(tmp), ("inline",))
        try:
            await peers.start()
            await stack.start()
            kinds = bodies()
            async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=120)) as session:
                body, headers, _, check = kinds["JSON"]
                inline = CpuMeter({"inline": peers.children[0].pid, "client": os.getpid()})
                await measure(session, "inline, JSON", peers.targets["inline"].url, body,
                              headers, check, inline)
                metered = CpuMeter({**stack.pids(), "client": os.getpid()})
                for kind, (body, headers, query, check) in kinds.items():
                    await measure(session, f"calcstream, {kind}",
                                  f"{stack.url}/v1/calculations?{query}", body, headers, check,
                                  metered)
        finally:
            stack.stop()
            peers.stop()


if __name__ == "__main__":
    asyncio.run(main())
