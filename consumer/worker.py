"""The worker: consume requests → micro-batch → compute in a thread → publish → commit.

Offsets are committed only after every result and dead-letter record of the batch (and of every
earlier batch) is acknowledged by the broker, so a crash can cause redelivery but never loss.
With ``processing_guarantee=exactly_once`` the results and the offsets of each request
partition are one Kafka transaction instead (``transactions.py``), so a redelivered record's
earlier result is never committed.

The roles are split the way aiokafka splits its consumer: this module fetches, batches and
keeps the batches in flight (and drains them on shutdown and rebalance); ``publishing.py``
sends and retries, ``committing.py`` orders commits, ``transactions.py`` does both in one
transaction, ``journaling.py`` keeps the attempts journal. A background task that dies (a
batch, the lag watch) fails the worker.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from collections.abc import Iterable
from functools import partial
from types import TracebackType
from typing import Any, TypeVar

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRebalanceListener, TopicPartition
from aiokafka.errors import KafkaError
from opentelemetry.trace import TracerProvider
from prometheus_client import CollectorRegistry

from consumer.attempts import JournalRecord
from consumer.batching import Batcher
from consumer.cache import from_settings
from consumer.committing import Committer
from consumer.errors import ClientStalled, NotStartedError
from consumer.journaling import JournalKeeper
from consumer.metrics import WorkerCollector
from consumer.processing import (
    BatchContext,
    BatchOutput,
    RequestRecord,
    give_up,
    process_batch,
)
from consumer.publishing import BatchPublisher
from consumer.settings import WorkerSettings
from consumer.stats import WorkerStats
from consumer.tracing import BatchTracing
from consumer.transactions import Part, Superseded, Transactions
from core.admin import AUTHORIZATION_ERRORS, ensure_topics, refusal, wait_for_broker
from core.connections import ended_metadata_task, guard_broken_connections, stop_consumer
from core.looplag import LoopLagMonitor
from core.metrics import MetricsServer
from core.producers import stop_producer
from core.secrets import masked
from core.tasks import cancel_and_wait
from core.tracing import shutdown, tracer_provider

logger = logging.getLogger(__name__)

T = TypeVar("T")

_IDLE_POLL_MS = 100
# Room for the key, headers and batch framing next to a result value in one produce request.
_RECORD_OVERHEAD = 1024


class Worker:
    """One member of the worker group: start(), run() until request_stop(), then stop()."""

    def __init__(self, settings: WorkerSettings, tracing: TracerProvider | None = None) -> None:
        """``tracing``: where batch spans go (default: the provider the settings ask for, or
        none); ``stop()`` shuts it down."""
        self.settings = settings
        self.stats = WorkerStats()
        self.loop_lag = LoopLagMonitor(on_sample=self.stats.loop_lag_seconds.observe)
        self.registry = CollectorRegistry()
        self.registry.register(WorkerCollector(self.stats, settings.worker_id))
        self.metrics: MetricsServer | None = None
        self._lag_task: asyncio.Task[None] | None = None
        self._clients_task: asyncio.Task[None] | None = None
        self._consumer: AIOKafkaConsumer | None = None
        self._producer: AIOKafkaProducer | None = None
        self._publisher: BatchPublisher | None = None
        self._committer: Committer | None = None
        self._transactions: Transactions | None = None
        self._journal: JournalKeeper | None = None
        self._batcher: Batcher[Any] = Batcher(
            settings.max_batch_size, settings.max_batch_delay_ms / 1000.0
        )
        self._inflight: set[asyncio.Task[None]] = set()
        self._committing: set[asyncio.Task[None]] = set()
        """exactly_once: batches in open transactions, waiting for them to commit."""
        self._capacity: asyncio.Future[None] | None = None
        self._inflight_records = 0
        self._stopping = asyncio.Event()
        self._handing_over: set[TopicPartition] = set()  # being revoked right now
        # Rebalances begun so far. Every one revokes every partition (aiokafka's protocol is
        # eager) and the next assignment starts each from its committed offset, so records
        # taken before one began are read again after it and must not be launched.
        self._revocations = 0
        self._failure: BaseException | None = None
        provider = tracing or tracer_provider(settings, "calcstream-worker", settings.worker_id)
        self._tracing = (BatchTracing(provider, settings.worker_id, settings.requests_topic)
                         if provider is not None else None)
        self._ctx = BatchContext(
            worker=settings.worker_id, group=settings.group_id,
            max_result_bytes=settings.max_message_bytes - _RECORD_OVERHEAD,
            cache=from_settings(settings.redis_url, settings.cache_entries, settings.cache_ttl_s,
                                settings.cache_bytes),
        )

    async def __aenter__(self) -> Worker:
        await self.start()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()

    async def start(self) -> None:
        """Connect, create missing topics, join the group; ``BrokerRefused`` when the broker
        will not let it."""
        try:
            await self._start()
        except AUTHORIZATION_ERRORS as exc:
            raise refusal(exc, self.settings) from None

    async def _start(self) -> None:
        s = self.settings
        logger.info("worker starting with %s", masked(s))
        guard_broken_connections()
        await wait_for_broker(s)
        if s.create_topics:
            await ensure_topics(s)
        self._producer = AIOKafkaProducer(client_id=s.worker_id, **s.producer_options())
        await self._producer.start()
        self._publisher = BatchPublisher(self._producer, s.topics, self.stats)
        consumer = self._consumer = AIOKafkaConsumer(**s.consumer_options())
        consumer.subscribe([s.requests_topic], listener=_Rebalance(self))
        if s.max_attempts:
            partitions = len(await self._producer.partitions_for(s.requests_topic))
            self._journal = await JournalKeeper.open(s, partitions, consumer, self._publisher)
        on_committed = self._journal.committed if self._journal else None
        if s.processing_guarantee == "exactly_once":
            self._transactions = Transactions(s, consumer, s.topics, self.stats,
                                              self._fail_with, on_committed)
        else:
            self._committer = Committer(consumer, self.stats, on_committed)
        await consumer.start()
        self.loop_lag.start()
        self._lag_task = self._background(self._watch_lag(), "consumer-lag")
        self._clients_task = self._background(self._watch_clients(), "kafka-clients")
        if s.metrics_enabled:
            self.metrics = MetricsServer(self.registry, s.metrics_host, s.metrics_port)
            await self.metrics.start()

    def request_stop(self) -> None:
        """Ask ``run()`` to stop fetching, finish what it has, commit and return."""
        self._stopping.set()

    async def stop(self) -> None:
        """Leave the group and close the clients; safe to call twice."""
        self.request_stop()
        await self.loop_lag.stop()
        lag_task, self._lag_task = self._lag_task, None
        clients_task, self._clients_task = self._clients_task, None
        await cancel_and_wait(lag_task, clients_task)
        metrics, self.metrics = self.metrics, None
        if metrics is not None:
            await metrics.stop()
        consumer, self._consumer = self._consumer, None
        producer, self._producer = self._producer, None
        journal, self._journal = self._journal, None
        transactions, self._transactions = self._transactions, None
        # Closed in the reverse order of pushing (transactions first), each even if one fails.
        async with contextlib.AsyncExitStack() as closing:
            if producer is not None:
                closing.push_async_callback(stop_producer, producer,
                                            self.settings.drain_timeout_s)
            if journal is not None:
                closing.push_async_callback(journal.close)
            if consumer is not None:
                closing.push_async_callback(stop_consumer, consumer)
            if transactions is not None:
                closing.push_async_callback(transactions.close)
        tracing, self._tracing = self._tracing, None
        if tracing is not None:
            shutdown(tracing.provider)

    async def run(self) -> None:
        """Consume until ``request_stop()``; then drain in-flight batches and commit them."""
        consumer = self._require(self._consumer)
        s = self.settings
        while not self._stopping.is_set():
            # Batches count until they are committed, not just until they are published: one
            # stuck batch must not let later, finished ones pile up uncommitted (each would be
            # answered again after a crash). Under exactly_once, until they are in their
            # partitions' transactions (_in_transaction).
            if self._busy() >= s.max_in_flight:
                await self._wait_for_capacity(consumer)
                continue
            left = self._batcher.time_left()
            timeout_ms = _IDLE_POLL_MS if left is None else max(1, math.ceil(left * 1000))
            space = max(1, s.max_batch_size - len(self._batcher))
            fetched = await consumer.getmany(timeout_ms=timeout_ms, max_records=space)
            for records in fetched.values():
                self._batcher.add(records)
            self._count_held()
            while self._batcher.due() and self._busy() < s.max_in_flight:
                await self._dispatch(self._batcher.take())
        if len(self._batcher):
            self._launch(self._batcher.take())
        if await self._drain(s.drain_timeout_s) and self._failure is None:
            await self._release(consumer.assignment())
        if self._failure is not None:
            raise self._failure
        logger.info("worker %s drained: %d records in %d batches; results %s; dead letters %d",
                    s.worker_id, self.stats.records, self.stats.batches,
                    dict(self.stats.results), self.stats.dead_letters)

    async def _dispatch(self, records: list[RequestRecord]) -> None:
        """Launch a batch; records a worker died computing go first, one at a time and alone,
        so that the next death is attributed to one record."""
        journal = self._journal
        revocations = self._revocations
        last_suspect = await journal.suspects(records) if journal is not None else {}
        if self._revocations != revocations:
            return  # a rebalance began while the journal was read: these are read again
        if journal is None or not last_suspect:
            self._launch(records)
            return
        consumer = self._require(self._consumer)
        # Everything of a partition up to its last suspect goes alone, in order; the rest
        # follows as one batch, so no commit overtakes an earlier record.
        alone = [r for r in records if r.offset <= last_suspect.get((r.topic, r.partition), -1)]
        rest = [r for r in records if r.offset > last_suspect.get((r.topic, r.partition), -1)]
        # Nothing else in flight, so a death now is this record's. No abandoning here: a
        # later commit must never overtake an earlier batch.
        stop = asyncio.ensure_future(self._stopping.wait())
        try:
            while self._inflight and not self._stopping.is_set():
                await asyncio.wait({*self._inflight, stop}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            stop.cancel()
        # A partition being revoked is left as it is, uncommitted from its first record not
        # computed: its next owner takes it from the commit, and the rebalance does not wait
        # for every suspect to be computed alone (each takes a few round trips).
        skipped: set[tuple[str, int]] = set()
        for record in alone:
            if self._stopping.is_set() or self._revocations != revocations:
                return  # the rest stays uncommitted: delivered again
            tp = TopicPartition(record.topic, record.partition)
            if ((tp.topic, tp.partition) in skipped or tp in self._handing_over
                    or tp not in consumer.assignment()):
                skipped.add((tp.topic, tp.partition))
                continue
            prior = journal.prior(record)
            task = self._launch([record], abandon=prior >= self.settings.max_attempts,
                                alone=True)
            await asyncio.wait({task})
        rest = [r for r in rest if (r.topic, r.partition) not in skipped
                and TopicPartition(r.topic, r.partition) not in self._handing_over]
        if rest and not self._stopping.is_set() and self._revocations == revocations:
            self._launch(rest)

    def _busy(self) -> int:
        """Batches computing, publishing, committing, or finished behind an uncommitted one."""
        waiting = len(self._committer) if self._committer is not None else 0
        return max(len(self._inflight), waiting)

    async def _wait_for_capacity(self, consumer: AIOKafkaConsumer) -> None:
        """Pause fetching until a batch lands or a stop is requested (a batch stuck publishing
        must not keep SIGTERM waiting)."""
        if not self._inflight:
            return
        paused = consumer.assignment()
        consumer.pause(*paused)
        stop = asyncio.ensure_future(self._stopping.wait())
        if self._capacity is None:
            self._capacity = asyncio.get_running_loop().create_future()
        waits: set[asyncio.Future[Any]] = {*self._inflight, stop, self._capacity}
        try:
            await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
        finally:
            stop.cancel()
            consumer.resume(*(tp for tp in paused if tp in consumer.assignment()))

    def _launch(self, records: list[RequestRecord], abandon: bool = False,
                alone: bool = False) -> asyncio.Task[None]:
        token: object
        if self._transactions is not None:
            token = self._transactions.split(records)
        else:
            token = self._require(self._committer).open(records)
        task = asyncio.get_running_loop().create_task(
            self._handle(records, token, abandon, alone))
        if self._tracing is not None:
            self._tracing.follow(task, records)
        self._inflight.add(task)
        self._inflight_records += len(records)
        task.add_done_callback(partial(self._landed, len(records)))
        self.stats.in_flight = len(self._inflight)
        self.stats.peak_in_flight = max(self.stats.peak_in_flight, len(self._inflight))
        self._count_held()
        return task

    def _count_held(self) -> None:
        """Records taken from the consumer and not yet handled: queued or in a batch in
        flight. Bounded by (max_in_flight + 1) x max_batch_size, because fetching asks for at
        most what the queue has room for and pauses while max_in_flight batches are out."""
        held = len(self._batcher) + self._inflight_records
        self.stats.held = held
        self.stats.peak_held = max(self.stats.peak_held, held)

    def _in_transaction(self, records: int) -> None:
        """exactly_once: the running batch's records are in their partitions' open
        transactions, which commit on their own clock (every transaction interval). The batch
        no longer takes one of ``max_in_flight``: a crash from here on loses only work (the
        transactions abort and the records are read again), never a duplicate, and counting
        it until the commit would cap a worker at ``max_in_flight`` batches per interval."""
        task = asyncio.current_task()
        if task in self._inflight:
            self._inflight.discard(task)
            self._committing.add(task)
            self._inflight_records -= records
            self._count_held()
            self.stats.in_flight = len(self._inflight)
            self._capacity_freed()

    def _capacity_freed(self) -> None:
        waiter, self._capacity = self._capacity, None
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def _landed(self, records: int, task: asyncio.Task[None]) -> None:
        if task in self._committing:
            self._committing.discard(task)  # its records were counted out when it got there
        else:
            self._inflight.discard(task)
            self._inflight_records -= records
        self._count_held()
        self.stats.in_flight = len(self._inflight)
        self._fail_on_error(task)

    def _background(self, work: Any, name: str) -> asyncio.Task[None]:
        """A task that runs as long as the worker; its death fails the worker."""
        task: asyncio.Task[None] = asyncio.get_running_loop().create_task(work, name=name)
        task.add_done_callback(self._fail_on_error)
        return task

    def _fail_on_error(self, task: asyncio.Task[None]) -> None:
        if not task.cancelled() and task.exception() is not None:
            self._fail_with(task.exception(), task.get_name())  # type: ignore[arg-type]

    def _fail_with(self, exc: BaseException, where: str = "transactions") -> None:
        if self._failure is None:
            # A bug, not a broker error (those are retried): a batch's offsets could never be
            # committed, a dead watch would go unnoticed; stop rather than stall, and run()
            # raises it after draining.
            self._failure = exc
            logger.error("task %s failed unexpectedly; stopping", where, exc_info=exc)
            self.request_stop()

    async def _handle(self, records: list[RequestRecord], token: object,
                      abandon: bool = False, alone: bool = False) -> None:
        parts: list[Part] = token if isinstance(token, list) else []
        try:
            if self._transactions is not None:
                groups = [part.records for part in parts]
            else:
                groups = [records]
            if not any(groups):
                return  # every record was fetched for a lane that is gone: read again
            started = time.perf_counter()
            outputs, marks = await self._compute(groups, abandon)
            computed = time.perf_counter()
            if self._transactions is None:
                await self._publish(outputs[0], marks[0])
                self._sent()
                committer = self._require(self._committer)
                committer.finish(token)
                await committer.commit()
            else:
                added = await asyncio.gather(
                    *(self._transactions.settle(part, output, mark, self._sent, alone)
                      for part, output, mark in zip(parts, outputs, marks, strict=True)),
                    return_exceptions=True)
                for outcome in added:
                    if isinstance(outcome, BaseException) and not isinstance(outcome, Superseded):
                        raise outcome
                if not alone:
                    self._in_transaction(len(records))
                settled: list[BaseException | None] = []
                for outcome in added:
                    if isinstance(outcome, BaseException):
                        settled.append(outcome)
                        continue
                    try:
                        await outcome
                        settled.append(None)
                    except Superseded as exc:
                        settled.append(exc)
                if any(isinstance(outcome, Superseded) for outcome in settled):
                    kept = [i for i, outcome in enumerate(settled) if outcome is None]
                    groups = [groups[i] for i in kept]
                    outputs = [outputs[i] for i in kept]
        finally:
            for part in parts:
                part.release()
        self._count([r for group in groups for r in group], outputs)
        if logger.isEnabledFor(logging.DEBUG):
            logger.debug(
                "batch of %d: compute %.1f ms, publish+commit %.1f ms, statuses %s, offsets %s",
                len(records), (computed - started) * 1000, (time.perf_counter() - computed) * 1000,
                [o.statuses for o in outputs], _offset_ranges(records),
            )

    async def _compute(self, groups: list[list[RequestRecord]], abandon: bool
                       ) -> tuple[list[BatchOutput], list[list[JournalRecord]]]:
        """Each group's output and journal marks; the batch's one trip to a thread."""
        journal = self._journal
        records = [r for group in groups for r in group]
        if abandon:
            # Tried max_attempts times by workers that died computing it: don't try again.
            assert journal is not None
            return ([give_up(group, self._ctx, [journal.prior(r) for r in group])
                     for group in groups], [[] for _ in groups])
        if journal is not None:
            await journal.starting(records)
        started = time.monotonic()
        outputs = await asyncio.to_thread(_process_groups, groups, self._ctx)
        if (journal is not None and self._transactions is not None
                and time.monotonic() - started < self.settings.session_timeout_ms / 1000):
            # exactly_once: a computation that finished in time is marked at once, outside the
            # transaction, so that its batch being fenced for another's sake (a worker's
            # batches all abort together) does not count against it. One that outlasted the
            # session timeout (it held the interpreter: no heartbeats) is what cost the worker
            # its partitions: its marks go in the transaction, so if that never commits it
            # counts as a death and ends as a dead letter after max_attempts, rather than
            # being computed and fenced for ever.
            await journal.finished(records)
            return outputs, [[] for _ in groups]
        marks = [journal.computed(group) if journal is not None else [] for group in groups]
        return outputs, marks

    async def _publish(self, output: BatchOutput, marks: list[JournalRecord]) -> None:
        """Publish a computed batch and wait for every ack."""
        await self._require(self._publisher).publish(output, marks)

    def _sent(self) -> None:
        """A batch's records are acknowledged and not yet committed: the seam a crash between
        publishing and committing falls into."""

    async def _release(self, tps: Iterable[TopicPartition]) -> None:
        if self._journal is not None:
            await self._journal.release(tps, self.settings.drain_timeout_s)

    async def _drain(self, timeout: float) -> bool:
        """Wait for every in-flight batch to publish and commit, at most ``timeout`` seconds.

        Batches still unpublished then are abandoned uncommitted (their records are delivered
        again, to this worker or the partitions' next owner): a topic that refuses writes must
        not keep a shutdown or a rebalance waiting forever. True if nothing was abandoned.
        """
        try:
            async with asyncio.timeout(timeout):
                while self._inflight or self._committing:
                    await asyncio.wait(self._inflight | self._committing)
            return True
        except TimeoutError:
            stuck = self._inflight | self._committing
            await cancel_and_wait(*stuck)
            if self._transactions is not None:
                self._transactions.abandon()
            else:
                self._require(self._committer).forget()
            logger.warning("abandoned %d batches still unpublished after %.1fs; nothing of them "
                           "is committed, their records will be delivered again",
                           len(stuck), timeout)
            return False

    async def _on_revoked(self, revoked: Iterable[TopicPartition]) -> None:
        revoked = list(revoked)
        self._revocations += 1
        self._handing_over.update(revoked)
        try:
            dropped = self._batcher.drop((tp.topic, tp.partition) for tp in revoked)
            self._count_held()
            if await self._drain(self.settings.drain_timeout_s):
                await self._release(revoked)
            elif self._journal is not None:
                self._journal.revoked(revoked)
            if self._transactions is not None:
                await self._transactions.close(revoked)
        finally:
            self._handing_over.difference_update(revoked)
        logger.info("partitions revoked %s; %d queued records left for the next owner",
                    sorted((tp.topic, tp.partition) for tp in revoked), dropped)

    def _count(self, records: list[RequestRecord], outputs: list[BatchOutput]) -> None:
        if not records:
            return
        s = self.stats
        s.records += len(records)
        s.batches += 1
        s.batch_size.observe(len(records))
        s.compute_seconds.observe(sum(o.compute_ms for o in outputs) / 1000.0)
        for output in outputs:
            s.dead_letters += len(output.dead_letters)
            s.results.update(output.statuses)
            s.cache_hits += output.cache_hits
        now = time.time()
        s.end_to_end_seconds.observe_many(now - r.timestamp / 1000.0 for r in records)

    async def _on_assigned(self, assigned: Iterable[TopicPartition]) -> None:
        assigned = sorted(assigned)
        if self._transactions is not None:
            # Before anything of these partitions is read: fence their previous holders.
            try:
                await self._transactions.assign(assigned)
            except Exception as exc:  # noqa: BLE001 - aiokafka would only log it
                # Without its lanes the worker could never answer these partitions.
                self._fail_with(exc, "partition assignment")
                return
        logger.info("partitions assigned %s", [(tp.topic, tp.partition) for tp in assigned])

    async def _watch_lag(self, interval: float = 1.0) -> None:
        """Every second: refresh how far behind each assigned partition is."""
        consumer = self._require(self._consumer)
        while True:
            await asyncio.sleep(interval)
            lag = {}
            for tp in consumer.assignment():
                high = consumer.highwater(tp)
                if high is not None:
                    try:
                        lag[(tp.topic, tp.partition)] = max(0, high - await consumer.position(tp))
                    except KafkaError:
                        continue
            self.stats.consumer_lag = lag

    async def _watch_clients(self, interval: float = 1.0) -> None:
        """Every second: the consumer's and the producer's metadata tasks still run
        (``ClientStalled`` when one ended; core.connections says how one did)."""
        clients = {"consumer": self._require(self._consumer)._client,
                   "producer": self._require(self._producer).client}
        while True:
            await asyncio.sleep(interval)
            for name, client in clients.items():
                if (task := ended_metadata_task(client)) is not None:
                    cause = None if task.cancelled() else task.exception()
                    raise ClientStalled(f"the {name}'s metadata task ended "
                                        f"({cause!r}): it would never refresh again") from cause

    @staticmethod
    def _require(client: T | None) -> T:
        if client is None:
            raise NotStartedError("the worker is not started; call start() first")
        return client


class _Rebalance(ConsumerRebalanceListener):  # type: ignore[misc]
    """Finish (publish and commit) in-flight batches before giving partitions up."""

    def __init__(self, worker: Worker) -> None:
        self._worker = worker

    async def on_partitions_revoked(self, revoked: set[TopicPartition]) -> None:
        await self._worker._on_revoked(revoked)

    async def on_partitions_assigned(self, assigned: set[TopicPartition]) -> None:
        await self._worker._on_assigned(assigned)


def _process_groups(groups: list[list[RequestRecord]], ctx: BatchContext) -> list[BatchOutput]:
    """The compute step of a batch: each group (a request partition, or the whole batch) on its
    own, so each has its own results to publish with its offsets."""
    return [process_batch(group, ctx) for group in groups]


def _offset_ranges(records: list[RequestRecord]) -> dict[str, str]:
    ranges: dict[str, list[int]] = {}
    for r in records:
        lo_hi = ranges.setdefault(f"{r.topic}/{r.partition}", [r.offset, r.offset])
        lo_hi[0], lo_hi[1] = min(lo_hi[0], r.offset), max(lo_hi[1], r.offset)
    return {k: f"{lo}-{hi}" for k, (lo, hi) in ranges.items()}
