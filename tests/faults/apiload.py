"""A paced load through the HTTP API, and what the API answered while brokers failed.

Every request is a single submit (``POST /v1/calculations``) with a fresh id, sent once: a 2xx
means the API says the broker acknowledged it (the checker holds it to that), a 503 that it
could not say so in time. Each answer is kept with when it was sent and answered and which
request partition its id goes to, so a fault's cost can be read per partition: how many 503s,
over how long, and when the partition took a request again.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from contextlib import suppress
from dataclasses import dataclass
from typing import Any

import aiohttp

from schemas.topics import partition_of
from tests.faults.harness import now_ms

HUNG_S = 10.0  # an answer slower than this counts as a hang (the API's bound is 2 s)


@dataclass(frozen=True, slots=True)
class Answer:
    """One submit and what became of it: an HTTP status, or 0 when no answer came."""

    rid: str
    partition: int
    sent_ms: int
    answered_ms: int
    status: int
    error: str = ""


@dataclass(frozen=True, slots=True)
class FaultCost:
    """What one fault cost the API's clients, from the fault until the next one."""

    api_503: int
    window_503_ms: int
    partition_back_ms: int
    other: dict[str, int]

    def figures(self) -> dict[str, Any]:
        """For a report."""
        return {"api_503": self.api_503, "window_503_ms": self.window_503_ms,
                "partition_back_ms": self.partition_back_ms, **self.other}


class ApiLoad:
    """Submits ``<prefix>-<i>`` (``sum_of_squares([i % 97, 1, 2])``, as ``harness.Load``) at
    ``rate`` per second until stopped, at most ``concurrency`` awaiting their answer."""

    def __init__(self, base_url: str, prefix: str, rate: float, partitions: int,
                 concurrency: int = 256) -> None:
        self.base_url = base_url
        self.prefix = prefix
        self.rate = rate
        self.partitions = list(range(partitions))
        self.concurrency = concurrency
        self.answers: list[Answer] = []
        self.sent = 0
        self._limit = asyncio.Semaphore(concurrency)
        self._stop = asyncio.Event()
        self._http: aiohttp.ClientSession | None = None
        self._task: asyncio.Task[None] | None = None
        self._inflight: set[asyncio.Task[None]] = set()

    @property
    def acked(self) -> set[str]:
        """Ids the API answered 2xx: accepted, so the broker must have them."""
        return {a.rid for a in self.answers if 200 <= a.status < 300}

    def statuses(self) -> Counter[int]:
        """How many answers of each status (0: no answer)."""
        return Counter(a.status for a in self.answers)

    async def __aenter__(self) -> ApiLoad:
        # aiohttp rather than httpx: at hundreds of requests in flight, httpx's connection
        # pool costs the load more CPU than the API spends answering.
        self._http = aiohttp.ClientSession(
            self.base_url, connector=aiohttp.TCPConnector(limit=self.concurrency),
            timeout=aiohttp.ClientTimeout(total=HUNG_S))
        self._task = asyncio.create_task(self._run())
        return self

    async def __aexit__(self, *exc: object) -> None:
        self._stop.set()
        if self._task is not None:
            self._task.cancel()
            with suppress(asyncio.CancelledError):
                await self._task
        for task in self._inflight:
            task.cancel()
        await asyncio.gather(*self._inflight, return_exceptions=True)
        if self._http is not None:
            await self._http.close()

    async def stop(self, at_least: int = 0, timeout: float = 60.0) -> None:
        """Send nothing more once ``at_least`` were sent, and wait for every answer."""
        async with asyncio.timeout(timeout):
            while self.sent < at_least:  # noqa: ASYNC110 - the load's own pace
                await asyncio.sleep(0.05)
        self._stop.set()
        assert self._task is not None
        await asyncio.wait_for(asyncio.shield(self._task), timeout)

    async def until_answered(self, partitions: set[int], since_ms: int,
                             timeout: float = 60.0) -> int:
        """Wait until each of ``partitions`` answered 2xx to a submit sent at or after
        ``since_ms``; the time that took, in ms from ``since_ms``."""
        async with asyncio.timeout(timeout):
            # Answers land from many tasks; none announces the one that completes the set.
            while (back := self.partition_back_ms(partitions, since_ms)) is None:  # noqa: ASYNC110
                await asyncio.sleep(0.05)
        return back

    def partition_back_ms(self, partitions: set[int], since_ms: int,
                          until_ms: int | None = None) -> int | None:
        """How long after ``since_ms`` the last of ``partitions`` answered 2xx to a submit sent
        after it; None while one has not."""
        first: dict[int, int] = {}
        for a in self.answers:
            if a.partition in partitions and 200 <= a.status < 300 and a.sent_ms >= since_ms \
                    and (until_ms is None or a.sent_ms < until_ms):
                first[a.partition] = min(a.answered_ms, first.get(a.partition, a.answered_ms))
        if set(first) != partitions:
            return None
        return max(first.values(), default=since_ms) - since_ms

    def cost(self, since_ms: int, until_ms: int | None, partitions: set[int]) -> FaultCost:
        """What the fault at ``since_ms`` cost until ``until_ms`` (the next fault, or the end):
        the answers given in that window, and when ``partitions`` took a request again."""
        window = [a for a in self.answers
                  if a.answered_ms >= since_ms and (until_ms is None or a.answered_ms < until_ms)]
        refused = [a.answered_ms for a in window if a.status == 503]
        other = Counter(f"answered_{a.status}{'_' + a.error if a.error else ''}"
                        if a.status else f"no_answer_{a.error}"
                        for a in window if a.status not in (200, 202, 503) or a.error)
        back = self.partition_back_ms(partitions, since_ms, until_ms)
        span = max(refused) - min(refused) if refused else 0
        return FaultCost(len(refused), span, -1 if back is None else back, dict(other))

    async def _run(self) -> None:
        started = time.monotonic()
        while not self._stop.is_set():
            due = int((time.monotonic() - started) * self.rate) + 1
            while self.sent < due and not self._stop.is_set():
                await self._limit.acquire()
                task = asyncio.create_task(self._submit(self.sent))
                self._inflight.add(task)
                task.add_done_callback(self._inflight.discard)
                self.sent += 1
            await asyncio.sleep(0.005)
        await asyncio.gather(*self._inflight, return_exceptions=True)

    async def _submit(self, i: int) -> None:
        assert self._http is not None
        rid = f"{self.prefix}-{i}"
        body = {"id": rid, "op": "sum_of_squares", "data": [float(i % 97), 1.0, 2.0]}
        sent = now_ms()
        status, error = 0, ""
        try:
            async with self._http.post("/v1/calculations", json=body) as response:
                await response.read()
                status = response.status
                if status == 503 and "Retry-After" not in response.headers:
                    error = "without_retry_after"
        except TimeoutError:
            error = "hung"
        except aiohttp.ClientError as exc:
            error = type(exc).__name__
        finally:
            self._limit.release()
        self.answers.append(Answer(rid, partition_of(rid.encode(), self.partitions), sent,
                                   now_ms(), status, error))
