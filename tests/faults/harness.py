"""Pieces every fault scenario uses: a paced load, a fleet of worker processes, an observer.

The observer tails the result and dead-letter topics from the beginning in the background, so a
scenario can wait on data ("every acked id answered", "the results stopped coming") instead of
sleeping, and finally hands all three topics to ``checker.check``.
"""

from __future__ import annotations

import asyncio
import re
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import suppress
from dataclasses import dataclass, field
from typing import Any

import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from core.kafka import EmbeddedKafka
from schemas.messages import DLQ_HEADER_PREFIX
from tests.faults.checker import Verdict, check
from tests.faults.inputs import OutsideRecord, read_outside
from tests.kafka import Deployment, TopicReader, request_json
from tests.processes import WorkerProcess


def now_ms() -> int:
    """Wall-clock milliseconds, the unit of record timestamps."""
    return int(time.time() * 1000)


class Load:
    """``total`` requests produced at ``rate`` per second in the background (acks=all).

    Request ``<prefix>-<i>`` is ``sum_of_squares([i % 97, 1, 2])``, so every result can be
    checked: ``expected(id)``. ``acked`` holds the ids the broker acknowledged.
    """

    def __init__(self, deployment: Deployment, prefix: str, total: int, rate: float) -> None:
        self.deployment = deployment
        self.prefix = prefix
        self.total = total
        self.rate = rate
        self.acked: set[str] = set()
        self.failed = 0
        self.sent = 0
        self._task: asyncio.Task[None] | None = None
        self._producer: AIOKafkaProducer | None = None

    @staticmethod
    def expected(request_id: str) -> float:
        """The correct result of a request this load produced."""
        i = int(request_id.rsplit("-", 1)[1])
        return float((i % 97) ** 2 + 5)

    async def __aenter__(self) -> Load:
        self._producer = AIOKafkaProducer(bootstrap_servers=self.deployment.bootstrap,
                                          acks="all", linger_ms=5, request_timeout_ms=10_000)
        await self._producer.start()
        self._task = asyncio.create_task(self._run())
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._task is not None and not self._task.done():
            self._task.cancel()
            with suppress(asyncio.CancelledError):
                await self._task
        if self._producer is not None:
            await self._producer.stop()

    def stop(self, at_least: int = 0) -> None:
        """Produce nothing more once ``at_least`` requests were sent (now, by default);
        outstanding acks still arrive."""
        self.total = max(self.sent, at_least)

    async def finished(self, timeout: float = 120.0) -> None:
        """Wait until every request was sent and its ack (or failure) came back."""
        assert self._task is not None
        await asyncio.wait_for(asyncio.shield(self._task), timeout)

    async def _run(self) -> None:
        assert self._producer is not None
        started = time.monotonic()
        pending: list[asyncio.Future[Any]] = []
        while self.sent < self.total:
            due = min(self.total, int((time.monotonic() - started) * self.rate) + 1)
            while self.sent < due:
                rid = f"{self.prefix}-{self.sent}"
                value = request_json(rid, "sum_of_squares", [float(self.sent % 97), 1.0, 2.0])
                fut = await self._producer.send(self.deployment.topics.requests, value,
                                                key=rid.encode())
                fut.add_done_callback(self._acked_callback(rid))
                pending.append(fut)
                self.sent += 1
            await asyncio.sleep(0.005)
        await asyncio.gather(*pending, return_exceptions=True)

    def _acked_callback(self, rid: str) -> Callable[[asyncio.Future[Any]], None]:
        def done(fut: asyncio.Future[Any]) -> None:
            if fut.cancelled() or fut.exception() is not None:
                self.failed += 1
            else:
                self.acked.add(rid)
        return done


@dataclass
class Fleet:
    """Worker processes of one deployment; ``close()`` kills whatever is still running."""

    deployment: Deployment
    env: dict[str, str] = field(default_factory=dict)
    members: list[WorkerProcess] = field(default_factory=list)
    retired: list[WorkerProcess] = field(default_factory=list)
    _count: int = 0

    def start(self, argv_module: str = "consumer", **env: str) -> WorkerProcess:
        """Start one more worker named ``w<n>`` (``python -m <argv_module>``)."""
        self._count += 1
        worker = WorkerProcess(self.deployment, f"w{self._count}",
                               [sys.executable, "-m", argv_module], **{**self.env, **env})
        self.members.append(worker)
        return worker

    @property
    def guarantee(self) -> str:
        """The workers' processing guarantee."""
        return self.env.get("CALCSTREAM_PROCESSING_GUARANTEE", "at_least_once")

    @property
    def exactly_once(self) -> bool:
        """Whether the workers run with ``processing_guarantee=exactly_once``."""
        return self.guarantee == "exactly_once"

    def retire(self, worker: WorkerProcess) -> None:
        """Forget a worker that was killed or stopped (its log is kept until close)."""
        self.members.remove(worker)
        self.retired.append(worker)

    async def ready(self, timeout: float = 60.0) -> None:
        """Wait until every member logged a non-empty partition assignment."""
        for worker in self.members:
            await worker.wait_for_log(r"partitions assigned \[\(", timeout)

    def __iter__(self) -> Iterator[WorkerProcess]:
        return iter(list(self.members))

    def close(self) -> None:
        """Kill every process and remove their logs."""
        for worker in self.members + self.retired:
            worker.close()

    def logs(self, tail: int | None = 2000) -> str:
        """Every worker's log (its last ``tail`` characters), for a failure message."""
        return "\n".join(f"--- {w.name}\n{w.log()[-tail if tail else 0:]}"
                         for w in self.members + self.retired)


class Observer:
    """Tails results and dead letters from the beginning while a scenario runs."""

    def __init__(self, deployment: Deployment) -> None:
        self.deployment = deployment
        self.results = TopicReader(deployment.bootstrap, deployment.topics.results)
        self.dead = TopicReader(deployment.bootstrap, deployment.topics.dlq)
        self.answered: set[str] = set()
        self.by_worker: dict[str, int] = {}
        self.last_arrival = time.monotonic()
        self._seen = {"results": 0, "dead": 0}
        self._arrived = asyncio.Event()
        self._tasks: list[asyncio.Task[Any]] = []

    async def __aenter__(self) -> Observer:
        await self.results.__aenter__()
        await self.dead.__aenter__()
        self._tasks = [asyncio.create_task(self._pump(self.results, "results")),
                       asyncio.create_task(self._pump(self.dead, "dead"))]
        return self

    async def __aexit__(self, *exc: object) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self.results.__aexit__()
        await self.dead.__aexit__()

    async def _pump(self, reader: TopicReader, name: str) -> None:
        def ingest(records: list[Any]) -> bool:
            new = records[self._seen[name]:]
            if new:
                self._seen[name] = len(records)
                self.last_arrival = time.monotonic()
                for r in new:
                    self._note(r, name)
                self._arrived.set()
            return False
        await reader.read_until(ingest, timeout=24 * 3600)

    def _note(self, record: Any, name: str) -> None:
        if name == "results":
            doc = orjson.loads(record.value)
            self.answered.add(doc["id"])
            self.by_worker[doc["worker"]] = self.by_worker.get(doc["worker"], 0) + 1
        else:
            headers = {k[len(DLQ_HEADER_PREFIX):]: v.decode() for k, v in record.headers
                       if k.startswith(DLQ_HEADER_PREFIX)}
            # The checker's name for a record without a readable id, and the id if it had one.
            self.answered.add(f"@{headers.get('original_partition')}:"
                              f"{headers.get('original_offset')}")
            if "request_id" in headers:
                self.answered.add(headers["request_id"])

    @property
    def result_records(self) -> list[Any]:
        """Result records read so far."""
        return self.results.records

    @property
    def dead_letters(self) -> list[Any]:
        """Dead-letter records read so far."""
        return self.dead.records

    async def wait_for(self, predicate: Callable[[], bool], timeout: float) -> bool:
        """Wait until ``predicate()`` holds after some arrival; False on timeout."""
        deadline = time.monotonic() + timeout
        while not predicate():
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            self._arrived.clear()
            with suppress(TimeoutError):
                await asyncio.wait_for(self._arrived.wait(), min(left, 0.5))
        return True

    async def quiet(self, seconds: float, timeout: float = 60.0) -> None:
        """Wait until nothing new arrived for ``seconds`` (late duplicates land first)."""
        deadline = time.monotonic() + timeout
        while (time.monotonic() - self.last_arrival < seconds  # noqa: ASYNC110 - no event for
               and time.monotonic() < deadline):                 # "nothing arrived"
            await asyncio.sleep(seconds / 4)

    async def settle(self, acked: set[str], timeout: float = 60.0, quiet: float = 0.5,
                     requests: int | None = None) -> Verdict:
        """Wait for every acked id to be answered (or ``timeout``), then a quiet period; check.

        ``requests``: how many records the request topic holds at least (default: the acked
        count); the request topic is read until then and then until it is quiet.
        """
        await self.wait_for(lambda: acked <= self.answered, timeout)
        await self.quiet(quiet)
        async with TopicReader(self.deployment.bootstrap,
                               self.deployment.topics.requests) as reader:
            with suppress(TimeoutError):
                await reader.read_count(len(acked) if requests is None else requests, timeout=30)
            requests_read = await reader.read_more(quiet=0.3)
        return check(requests_read, self.result_records, self.dead_letters, acked)

    async def explain_lost(self, verdict: Verdict) -> str:
        """For a failure message: where each lost id was written, whether an independent
        client (librdkafka, from scratch) finds its result after all, the group's committed
        offsets, and which records of the result and dead-letter topics this observer missed;
        tells a reader that missed records from a request never answered."""
        topics = self.deployment.topics
        requests, results, dead = await asyncio.gather(
            asyncio.to_thread(read_outside, self.deployment.bootstrap, topics.requests),
            asyncio.to_thread(read_outside, self.deployment.bootstrap, topics.results),
            asyncio.to_thread(read_outside, self.deployment.bootstrap, topics.dlq))
        lost = set(verdict.lost)
        written = {r.key.decode(errors="replace"): (r.partition, r.offset)
                   for r in requests if r.key is not None and r.key.decode(errors="replace")
                   in lost}
        found = {orjson.loads(r.value)["id"]: (r.partition, r.offset) for r in results
                 if r.value and orjson.loads(r.value)["id"] in lost}
        committed = await committed_offsets(self.deployment)
        lines = [f"{len(lost)} lost; {len(found)} of them have a result after all when the "
                 f"result topic is read again by librdkafka; committed offsets {committed}",
                 _missed("results", self.result_records, results),
                 _missed("dead letters", self.dead_letters, dead)]
        async with TopicReader(self.deployment.bootstrap, topics.dlq) as again:
            await again.read_more(quiet=1.0)
        lines.append(_missed("dead letters read again by aiokafka", again.records, dead))
        for rid in sorted(lost, key=lambda r: written.get(r, (0, 0))):
            lines.append(f"  {rid} at request partition:offset {written.get(rid)}, result at "
                         f"{found.get(rid)}")
        return "\n".join(lines[:60])

    def wrong_values(self, expected: Callable[[str], float]) -> list[str]:
        """Ids whose result is not ``ok`` with the expected value (late copies included)."""
        wrong = []
        for r in self.result_records:
            doc = orjson.loads(r.value)
            if doc["status"] != "ok" or doc["result"] != expected(doc["id"]):
                wrong.append(doc["id"])
        return wrong


def _missed(name: str, observed: list[Any], outside: list[OutsideRecord]) -> str:
    """Records librdkafka reads that an observer's reader did not hand over, with the
    offsets the observer did read next to each."""
    read = {(r.partition, r.offset) for r in observed}
    missing = sorted((r.partition, r.offset) for r in outside
                     if (r.partition, r.offset) not in read)
    order = [(r.partition, r.offset) for r in outside]
    around = []
    for p, o in missing[:10]:
        at = order.index((p, o))
        delivered = [x for q, x in order[max(0, at - 4):at + 5] if q == p]
        around.append(f"{p}:{o} (observer read "
                      f"{sorted(x for q, x in read if q == p and abs(x - o) <= 2)}; librdkafka "
                      f"delivered {delivered} in this order)")
    return (f"{name}: the observer read {len(read)}, librdkafka {len(outside)}; missed by the "
            f"observer: {len(missing)} {around}")


async def uncommitted_copies(dep: Deployment) -> int:
    """Result records beyond the first per id as a ``read_uncommitted`` reader sees them:
    with exactly_once, the aborted copies that ``read_committed`` readers never see."""
    async with TopicReader(dep.bootstrap, dep.topics.results,
                           isolation="read_uncommitted") as reader:
        records = await reader.read_more(quiet=0.5)
    ids = [r.key for r in records]
    return len(ids) - len(set(ids))


async def committed_offsets(dep: Deployment) -> dict[int, int]:
    """The group's committed offsets per request partition, as the broker reports them."""
    consumer = AIOKafkaConsumer(bootstrap_servers=dep.bootstrap, group_id=dep.group,
                                enable_auto_commit=False)
    await consumer.start()
    try:
        found = {p: await consumer.committed(TopicPartition(dep.topics.requests, p))
                 for p in range(dep.partitions)}
    finally:
        await consumer.stop()
    return {p: offset for p, offset in found.items() if offset is not None}


_SKIPPED_MARKERS = re.compile(
    r"Couldn't find leader endpoint for partitions .*? while trying to send transaction markers "
    r"for (\S+?)[,;]? ")


def markers_skipped(broker: EmbeddedKafka, requests_topic: str) -> set[int]:
    """Request partitions whose transaction the broker completed without writing its markers.

    Kafka's transaction coordinator treats a partition without a leader endpoint as deleted
    and completes the commit without its markers. A single KRaft node restarted after a
    SIGKILL fences its own previous registration some seconds after it came back, and its
    partitions have no leader until it registers anew: a commit that was under way when it
    died can end then, its offset commit never applied, and the partition's next owner answers
    those requests again. The broker logs it; this reads which lanes
    (``<prefix>.<topic>.<p>``)."""
    server_log = broker.data_dir / "logs" / "server.log"
    text = server_log.read_text(errors="replace") if server_log.exists() else ""
    found = set()
    for transactional_id in _SKIPPED_MARKERS.findall(text):
        prefix, _, partition = transactional_id.rpartition(".")
        if prefix.endswith(f".{requests_topic}") and partition.isdigit():
            found.add(int(partition))
    return found
