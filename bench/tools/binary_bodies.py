"""``python -m bench.tools.binary_bodies``: W2 through the API with JSON bodies, with binary
ones, and with binary bodies and binary results, on one stack, one after the other.

W2 is a 300×300 ``matmul`` (A random, B the identity): 180,000 values, a 2.1 MB JSON body or
1.44 MB of raw float64 (``application/octet-stream``, op and args in the query); its result is
1.7 MB of JSON, or a 720 KB ``.npy`` file for ``Accept: application/x-npy``. The inline peer
(``bench.peers.inline``: NumPy in ``async def``, one process) takes the JSON body, by the same
client, before them; the Python client's ``compute`` (JSON result over the websocket) and
``compute_array`` (``.npy`` result on the submit) after them. For each: one client in sequence
(latency), then ``CLIENTS`` clients at once (results/s), every answer checked (its first row is
A's).
"""

from __future__ import annotations

import asyncio
import functools
import io
import os
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import aiohttp
import numpy as np
import numpy.typing as npt
import orjson

from bench.harness import payloads
from bench.harness.procs import CpuMeter
from bench.harness.stack import CalcstreamStack
from bench.harness.stats import percentiles
from bench.harness.targets import PeerSet
from bench.runner import W2_ENV
from calcstream.client import Client

SEQUENTIAL = 20
CLIENTS = 16
PER_CLIENT = 4
N = payloads.W2_N


Check = Callable[[bytes], bool]


def operands() -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]:
    """A, and the request's data: A then the identity (so the product is A)."""
    a = np.random.default_rng(2).standard_normal((N, N))
    return a, np.concatenate([a.ravel(), np.eye(N).ravel()])


def bodies() -> dict[str, tuple[bytes, dict[str, str], str, Check]]:
    """Kind → (body, headers, query, what a right answer passes)."""
    a, data = operands()
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


Call = Callable[[], Awaitable[None]]
"""One request, its answer checked (``RuntimeError`` if wrong)."""


async def one(session: aiohttp.ClientSession, url: str, body: bytes, headers: dict[str, str],
              check: Check) -> None:
    async with session.post(url, data=body, headers=headers) as r:
        raw = await r.read()
    if r.status != 200 or not check(raw):
        raise RuntimeError(f"answer {r.status}: {raw[:200]!r}")


async def timed(call: Call) -> float:
    start = time.perf_counter()
    await call()
    return (time.perf_counter() - start) * 1000


async def measure(name: str, call: Call, body_bytes: int, meter: CpuMeter) -> None:
    """Print one kind's latency, one client at a time, its rate with CLIENTS at once, and the
    CPU each metered process spent per result at that rate."""
    await call()  # warm
    times = [await timed(call) for _ in range(SEQUENTIAL)]
    p = percentiles(times)

    async def client() -> None:
        for _ in range(PER_CLIENT):
            await call()
    started = time.perf_counter()
    meter.start()
    await asyncio.gather(*(client() for _ in range(CLIENTS)))
    rate = CLIENTS * PER_CLIENT / (time.perf_counter() - started)
    cpu = "  ".join(f"{who} {us / 1000:.1f}" for who, us in
                    meter.per_item(CLIENTS * PER_CLIENT).items())
    print(f"W2 {name:32} body {body_bytes / 1e6:4.2f} MB  one client p50 {p['p50']:6.1f} ms "
          f"p99 {p['p99']:6.1f} ms  {CLIENTS} clients {rate:5.1f} results/s  CPU ms per "
          f"result: {cpu}", flush=True)


def client_calls(client: Client) -> dict[str, Call]:
    """The Python client's two ways to one W2 result, each checked like the HTTP kinds."""
    a, data = operands()
    args = {"m": N, "k": N, "n": N}

    async def compute() -> None:
        result = await client.compute("matmul", data, args=args, timeout=60)
        if not np.array_equal(np.asarray(result.result[0]), a[0]):  # type: ignore[index]
            raise RuntimeError(f"wrong first row from compute: {result.id}")

    async def compute_array() -> None:
        values = await client.compute_array("matmul", data, args=args, timeout=60)
        if not np.array_equal(values[0], a[0]):
            raise RuntimeError("wrong first row from compute_array")
    return {"Client.compute": compute, "Client.compute_array": compute_array}


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
                url = peers.targets["inline"].url
                await measure("inline, JSON", functools.partial(one, session, url, body,
                                                                headers, check),
                              len(body), inline)
                metered = CpuMeter({**stack.pids(), "client": os.getpid()})
                for kind, (body, headers, query, check) in kinds.items():
                    url = f"{stack.url}/v1/calculations?{query}"
                    await measure(f"calcstream, {kind}",
                                  functools.partial(one, session, url, body, headers, check),
                                  len(body), metered)
            async with Client(stack.url, timeout=120) as python_client:
                for name, call in client_calls(python_client).items():
                    await measure(f"calcstream, {name}", call, 8 * 2 * N * N, metered)
        finally:
            stack.stop()
            peers.stop()


if __name__ == "__main__":
    asyncio.run(main())
