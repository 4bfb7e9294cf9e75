"""Python-side load: the /healthz probe, the fixed-rate (open-loop) client, a closed-loop client.

wrk does the closed-loop saturation runs (it costs far less CPU per request); these cover what
wrk cannot: a fixed offered rate with latency measured from each request's scheduled start (so
a slow server cannot hide queueing, no coordinated omission), and a probe on its own timer.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

import aiohttp
import orjson

from bench.harness.payloads import BodyPool, close
from bench.harness.stats import percentiles


@dataclass
class Probe:
    """``GET url`` every ``interval`` s on one keep-alive connection; (time, latency) pairs."""

    url: str
    interval: float = 0.01
    samples: list[tuple[float, float]] = field(default_factory=list)
    failures: int = 0

    async def run(self, stop: asyncio.Event, limit_s: float) -> None:
        """Probe until ``stop`` is set or ``limit_s`` passes."""
        connector = aiohttp.TCPConnector(limit=1)
        timeout = aiohttp.ClientTimeout(total=10)
        async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
            t0 = time.perf_counter()
            due = t0
            while not stop.is_set() and due - t0 < limit_s:
                start = time.perf_counter()
                try:
                    async with session.get(self.url) as resp:
                        await resp.read()
                        ok = resp.status == 200
                except (aiohttp.ClientError, TimeoutError):
                    ok = False
                end = time.perf_counter()
                if ok:
                    self.samples.append((start - t0, end - start))
                else:
                    self.failures += 1
                due += self.interval
                await asyncio.sleep(max(0.0, due - time.perf_counter()))

    @property
    def latencies_ms(self) -> list[float]:
        """Probe latencies in milliseconds."""
        return [lat * 1000 for _, lat in self.samples]


async def idle_probe(url: str, seconds: float) -> dict[str, float]:
    """Probe latency at ``url`` with nothing else going on."""
    probe = Probe(url)
    await probe.run(asyncio.Event(), seconds)
    return percentiles(probe.latencies_ms)


Check = Callable[[int, bytes], bool]


def result_check(pool: BodyPool) -> Check:
    """A response to body i is right when status is ok and the result is body i's answer."""

    def check(i: int, body: bytes) -> bool:
        doc = orjson.loads(body)
        return doc.get("status") == "ok" and close(float(doc["result"]), pool.expected[i])

    return check


@dataclass
class OpenLoopResult:
    """Latencies (ms) from each request's scheduled start, of the right answers only; the
    rest are counted as wrong (another status, a wrong value) or failed (no answer)."""

    offered: int
    seconds: float
    latencies_ms: list[float]
    wrong: int
    failed: int
    statuses: dict[int, int]


async def fixed_rate(url: str, pool: BodyPool, rate: float, seconds: float, status: int,
                     check: Check | None = None, max_open: int = 2_000) -> OpenLoopResult:
    """Send ``rate`` requests/s for ``seconds``, each at its scheduled time, on a pool of
    connections; wait (bounded) for every answer."""
    count = int(rate * seconds)
    latencies: list[float] = []
    wrong = failed = 0
    statuses: Counter[int] = Counter()
    connector = aiohttp.TCPConnector(limit=max_open)
    timeout = aiohttp.ClientTimeout(total=30)
    headers = {"Content-Type": "application/json"}

    async def one(i: int, due: float, session: aiohttp.ClientSession) -> None:
        nonlocal wrong, failed
        k = i % len(pool.bodies)
        try:
            async with session.post(url, data=pool.bodies[k], headers=headers) as resp:
                body = await resp.read()
                statuses[resp.status] += 1
                good = resp.status == status and (check is None or check(k, body))
        except (aiohttp.ClientError, TimeoutError):
            failed += 1
            return
        if good:
            latencies.append((time.perf_counter() - due) * 1000)
        else:
            wrong += 1

    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
        tasks = []
        t0 = time.perf_counter()
        for i in range(count):
            due = t0 + i / rate
            delay = due - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.create_task(one(i, due, session)))
        _, late = await asyncio.wait(tasks, timeout=60)
        elapsed = time.perf_counter() - t0
        for t in late:
            t.cancel()
        await asyncio.gather(*late, return_exceptions=True)
    return OpenLoopResult(count, elapsed, latencies, wrong, failed + len(late), dict(statuses))


async def closed_loop(url: str, pool: BodyPool, seconds: float, connections: int,
                      status: int) -> tuple[int, float]:
    """aiohttp with ``connections`` workers posting back to back; (answers with ``status``,
    elapsed s). Only used to compare its ceiling with wrk's."""
    done = 0
    headers = {"Content-Type": "application/json"}
    connector = aiohttp.TCPConnector(limit=connections)
    async with aiohttp.ClientSession(connector=connector) as session:
        t0 = time.perf_counter()
        end = t0 + seconds

        async def worker(k: int) -> None:
            nonlocal done
            while time.perf_counter() < end:
                async with session.post(url, data=pool.bodies[k % len(pool.bodies)],
                                        headers=headers) as resp:
                    await resp.read()
                    done += resp.status == status

        await asyncio.gather(*(worker(k) for k in range(connections)))
        return done, time.perf_counter() - t0
