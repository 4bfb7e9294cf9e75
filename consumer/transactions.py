"""Exactly once: a batch's results, dead letters, journal marks and offset commit in one Kafka
transaction per request partition.

**One transactional producer per request partition.** Partition ``p`` of the request topic is
written for by the transactional id ``<prefix>.<topic>.<p>`` (the prefix defaults to the group
id), whichever worker owns ``p``. A worker that is assigned ``p`` starts a new producer with that
id before it reads anything of ``p``; its ``InitProducerId`` bumps the id's epoch, which

1. aborts the transaction the previous holder of the id left open (and waits for one it was
   committing to complete), and
2. fences that holder: every later produce, offset commit or ``EndTxn`` it sends carries the
   old epoch and is refused (``ProducerFenced``).

Only then does the worker read ``p``'s committed offset and seek to it.

**Why that is exactly once.** Offsets of ``p`` are committed only inside transactions of
``p``'s id (``TxnOffsetCommit`` in the same transaction as the results). Consider the worker W
whose ``InitProducerId`` for ``p`` was the last one. Any transaction of an earlier holder either
completed before W's init returned (so W's offset read sees its commit) or is aborted by that
init and refused afterwards (fenced). So the committed offset W starts from accounts for every
committed result of ``p``, and nothing else can commit between W's read and W's own commits. A
transaction of W commits results and the offset past them together, or neither. Results that
were written and aborted stay in the log but are invisible to ``read_committed`` readers. Each
request therefore has exactly one committed outcome (result or dead letter), whatever workers
die, stall or come back.

This does not depend on the group's generation. aiokafka's ``TxnOffsetCommit`` is v0, so the
group coordinator cannot refuse a stale member's commit by generation (KIP-447); the fencing
here is by transactional id, as Kafka Streams did before exactly-once v2. A stale member that
still believes it owns ``p`` is refused at its next write. If it was fenced while the group
still assigns ``p`` to it (its transaction outlived ``transaction_timeout_ms``), it starts over
from the committed offset after one session timeout, by which time a true zombie has heard it
lost ``p``. Were a zombie to start over first, it would fence the new owner in turn; the argument
above holds for whichever init came last, so that wastes work but never duplicates.

**The transaction interval.** The lanes' transactions commit together,
``transaction_interval_ms`` after the first of them began, each taking every batch of its
partition that completed meanwhile (offsets, ``EndTxn``: a few round trips). Longer intervals
cost fewer round trips per result; every result becomes visible only at commit, so the interval
is added to latency.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, field

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.errors import KafkaError, KafkaTimeoutError, ProducerFenced

from consumer.attempts import JournalRecord
from consumer.batching import TP
from consumer.outbox import Outgoing, send_all
from consumer.processing import BatchOutput, RequestRecord
from consumer.publishing import BACKOFF_S, outgoing
from consumer.settings import WorkerSettings
from consumer.stats import WorkerStats
from core.producers import stop_producer
from core.tasks import cancel_and_wait
from schemas.topics import Topics

logger = logging.getLogger(__name__)

GIVE_UP_S = 5.0
"""How long a failed lane's producer may take to close before it is left behind."""

CALL_TIMEOUT_S = 30.0
"""The longest a lane's ``InitProducerId`` may take before it is tried again, and its commit
before the lane starts over (the next init then completes or aborts that commit, whichever the
broker got to)."""


class Superseded(Exception):
    """The batch's partition started over (fenced, or its transaction failed): its records are
    read again from the committed offset, so this batch's work is dropped."""


@dataclass(eq=False)
class Lane:
    """One request partition's transactional producer and the transaction it has open."""

    tp: TopicPartition
    producer: AIOKafkaProducer
    expected: int
    """The next request offset the lane takes: its committed offset when it opens."""
    tail: asyncio.Future[None] | None = None
    offset: int | None = None
    open_since: float | None = None
    committed: list[asyncio.Future[None]] = field(default_factory=list)
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    closed: bool = False

    def reserve(self) -> tuple[asyncio.Future[None] | None, asyncio.Future[None]]:
        """A turn after every batch reserved before: (the previous turn, this one)."""
        previous, mine = self.tail, asyncio.get_running_loop().create_future()
        self.tail = mine
        return previous, mine


@dataclass(eq=False)
class Part:
    """The records of one request partition in a batch, with their turn in its lane."""

    lane: Lane
    records: list[RequestRecord]
    previous: asyncio.Future[None] | None
    mine: asyncio.Future[None]

    @property
    def next_offset(self) -> int:
        """The offset to commit once these records are answered."""
        return self.records[-1].offset + 1

    def release(self) -> None:
        """Let the lane's next batch take its turn (whatever became of this one)."""
        if not self.mine.done():
            self.mine.set_result(None)


Sent = Callable[[], None]


class Transactions:
    """The lanes of the partitions this worker owns: opened on assignment, committed on an
    interval, closed on revocation."""

    def __init__(self, settings: WorkerSettings, consumer: AIOKafkaConsumer, topics: Topics,
                 stats: WorkerStats, on_error: Callable[[BaseException], None],
                 on_committed: Callable[[dict[TP, int]], None] | None = None) -> None:
        self.settings = settings
        self.on_error = on_error
        self.consumer = consumer
        self.topics = topics
        self.stats = stats
        self.on_committed = on_committed
        self.interval = settings.transaction_interval_ms / 1000.0
        self._lanes: dict[TopicPartition, Lane] = {}
        self._restarts: dict[TopicPartition, asyncio.Future[None]] = {}
        self._failures: dict[TopicPartition, int] = {}
        """Transactions of each partition that failed since its last commit."""
        self._tick: asyncio.TimerHandle | None = None
        self._closed = False

    def __len__(self) -> int:
        """Partitions with a lane."""
        return len(self._lanes)

    def transactional_id(self, tp: TopicPartition) -> str:
        """The transactional id every owner of ``tp`` writes with."""
        prefix = self.settings.transactional_id_prefix or self.settings.group_id
        return f"{prefix}.{tp.topic}.{tp.partition}"

    # -- batches ---------------------------------------------------------------------------

    def split(self, records: Sequence[RequestRecord]) -> list[Part]:
        """Group a batch by partition and reserve each group's turn in its lane, in fetch
        order. A lane takes each offset once, from where it started: records of a partition
        without a lane were fetched for an owner that no longer exists (read again later),
        records before the lane's next offset were taken already (a fetch from before the
        lane's seek to its committed offset delivers them a second time)."""
        groups: dict[TopicPartition, list[RequestRecord]] = {}
        for r in records:
            tp = TopicPartition(r.topic, r.partition)
            lane = self._lanes.get(tp)
            if lane is not None and r.offset >= lane.expected:
                lane.expected = r.offset + 1
                groups.setdefault(tp, []).append(r)
        parts = []
        for tp, group in groups.items():
            lane = self._lanes[tp]
            previous, mine = lane.reserve()
            parts.append(Part(lane, group, previous, mine))
        return parts

    async def settle(self, part: Part, output: BatchOutput, marks: Sequence[JournalRecord],
                     sent: Sent | None = None, urgent: bool = False) -> asyncio.Future[None]:
        """Add a part's records to its lane's transaction, in turn; return once they are in it,
        with a future that completes when that transaction commits (``Superseded`` if the
        lane started over first). Raises ``Superseded`` if it had already. ``urgent``
        commits at once instead of at the end of the interval (a record computed alone
        after a worker died: nothing else of its partition moves until it is answered)."""
        lane = part.lane
        try:
            if part.previous is not None:
                await asyncio.shield(part.previous)
            committed = await self._add(lane, part, output, marks)
        finally:
            part.release()
        if sent is not None:
            sent()
        self._schedule(lane, urgent)
        return committed

    async def _add(self, lane: Lane, part: Part, output: BatchOutput,
                   marks: Sequence[JournalRecord]) -> asyncio.Future[None]:
        pending = outgoing(self.topics, output, marks)
        async with lane.lock:
            if lane.closed or self._lanes.get(lane.tp) is not lane:
                raise Superseded(lane.tp)
            try:
                if lane.open_since is None:
                    await lane.producer.begin_transaction()
                    lane.open_since = time.monotonic()
                await self._send(lane, pending)
            except BaseException as exc:
                # Whatever was sent of a failed batch may be in the log: only an abort
                # removes it, so the transaction is given up, not continued.
                # (Cancelled: the batch is being abandoned, and so is the lane's transaction.)
                self._fail(lane, exc, restart=not isinstance(exc, asyncio.CancelledError))
                if isinstance(exc, (KafkaError, Superseded)):
                    raise Superseded(lane.tp) from exc
                raise
            lane.offset = part.next_offset
            done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            lane.committed.append(done)
            return done

    async def _send(self, lane: Lane, pending: list[Outgoing]) -> None:
        """Produce inside the open transaction; an error fails the transaction.

        Not retried here: a record whose ack failed may be in the log all the same (written,
        the answer lost to a broker that died, or a batch the producer gave up waiting on), and
        sending it again inside the same transaction would commit it twice. The producer
        itself retries what it can without duplicates (idempotent sequence numbers), for at most
        ``transaction_publish_timeout_s``."""
        # Bounded: the producer retries a broker that is away for as long as it takes, and a
        # producer can be left waiting by a broker that came back; past the bound the lane
        # starts over with a new producer (whose InitProducerId fences this one).
        bound = self.settings.transaction_publish_timeout_s
        try:
            async with asyncio.timeout(bound):
                unsent, errors = await send_all(lane.producer, pending)
        except TimeoutError as exc:
            self.stats.publish_retries += 1
            raise KafkaTimeoutError(f"publishing in the transaction of {lane.tp} took over "
                                    f"{bound}s") from exc
        if unsent:
            self.stats.publish_retries += 1  # (it is: read again from the committed offset)
            raise errors[0] if errors else Superseded(lane.tp)

    def _schedule(self, lane: Lane, urgent: bool = False) -> None:
        """Commit every open transaction one interval after the first of them opened.

        All lanes commit at the same moment rather than each on its own clock: a
        ``read_committed`` reader of a result partition stops at the first record of the
        oldest transaction still open there, so lanes whose transactions overlapped in turn
        would hold each other's results back by up to an interval each.
        """
        if lane.open_since is None or lane.closed:
            return
        if urgent and self._tick is not None:
            self._tick.cancel()
            self._tick = None
        if self._tick is not None:
            return
        delay = 0.0 if urgent else max(0.0, lane.open_since + self.interval - time.monotonic())
        self._tick = asyncio.get_running_loop().call_later(delay, self._commit_all)

    def _commit_all(self) -> None:
        self._tick = None
        self._spawn(self.flush())

    def _spawn(self, work: Awaitable[None]) -> asyncio.Future[None]:
        """Run housekeeping in the background; its death (a bug) fails the worker."""
        task = asyncio.ensure_future(work)
        task.add_done_callback(self._observe)
        return task

    def _observe(self, task: asyncio.Future[None]) -> None:
        if not task.cancelled() and task.exception() is not None:
            self.on_error(task.exception())  # type: ignore[arg-type]

    async def commit(self, lane: Lane) -> None:
        """Commit the lane's open transaction: its offset, then ``EndTxn``."""
        async with lane.lock:
            if lane.open_since is None or lane.closed:
                return
            offset = lane.offset
            assert offset is not None
            started = time.perf_counter()
            try:
                async with asyncio.timeout(CALL_TIMEOUT_S):
                    await lane.producer.send_offsets_to_transaction(
                        {lane.tp: offset}, self.settings.group_id)
                    await lane.producer.commit_transaction()
            except TimeoutError:
                self._fail(lane, KafkaTimeoutError(f"the commit of {lane.tp} took over "
                                                   f"{CALL_TIMEOUT_S}s"))
                return
            except BaseException as exc:
                self._fail(lane, exc)
                if isinstance(exc, KafkaError):
                    return
                raise
            self.stats.transactions += 1
            self._failures.pop(lane.tp, None)
            logger.debug("committed %s to offset %d", lane.tp, offset)
            self.stats.transaction_seconds.observe(time.perf_counter() - started)
            lane.open_since = None
            lane.offset = None
            waiting, lane.committed = lane.committed, []
        for fut in waiting:
            if not fut.done():
                fut.set_result(None)
        if self.on_committed is not None:
            self.on_committed({(lane.tp.topic, lane.tp.partition): offset})

    async def flush(self, tps: Iterable[TopicPartition] | None = None) -> None:
        """Commit the open transactions of these partitions (all by default) now."""
        lanes = [self._lanes[tp] for tp in (list(self._lanes) if tps is None else tps)
                 if tp in self._lanes]
        await asyncio.gather(*(self.commit(lane) for lane in lanes if lane.open_since is not None))

    # -- failures --------------------------------------------------------------------------

    def _fail(self, lane: Lane, exc: BaseException, restart: bool = True) -> None:
        """The lane's transaction cannot commit: drop its batches and start the partition over
        from its committed offset (now, or after a session timeout if it was fenced)."""
        if lane.closed:
            return
        lane.closed = True
        waiting, lane.committed = lane.committed, []
        for fut in waiting:
            if not fut.done():
                fut.set_exception(Superseded(lane.tp))
                fut.exception()  # its batch may be gone already; nobody else must be told
        if not restart:
            return
        fenced = isinstance(exc, ProducerFenced)
        self.stats.transactions_failed += 1
        if fenced:
            logger.warning("%s was fenced: another worker took partition %s; its uncommitted "
                           "batches are dropped (aborted, invisible to read_committed)",
                           self.transactional_id(lane.tp), lane.tp)
        else:
            logger.warning("the transaction of %s failed (%s); its batches are dropped and "
                           "the partition is read again from its committed offset",
                           lane.tp, exc)
        # A partition whose transactions keep failing (a topic refusing its writes) starts
        # over at once the first time, then backing off.
        failures = self._failures.get(lane.tp, 0)
        self._failures[lane.tp] = failures + 1
        delay = (self.settings.session_timeout_ms / 1000.0 if fenced else
                 BACKOFF_S[min(failures - 1, len(BACKOFF_S) - 1)] if failures else 0.0)
        if lane.tp not in self._restarts:
            self._restarts[lane.tp] = self._spawn(self._restart(lane.tp, lane, delay))

    async def _restart(self, tp: TopicPartition, lane: Lane | None, delay: float = 0.0) -> None:
        """Close ``tp``'s failed lane (None: it has none yet), then open a new one."""
        try:
            self.consumer.pause(tp)  # nothing more of it is read for a lane that is closed
            if delay:
                await asyncio.sleep(delay)
            if lane is not None:
                await _close(lane, self.settings.drain_timeout_s)
            await self._reopen(tp, lane)
        finally:
            self._restarts.pop(tp, None)

    async def _reopen(self, tp: TopicPartition, replaced: Lane | None) -> None:
        """Open ``tp``'s lane in place of ``replaced`` (None: it had none), retrying while
        the broker refuses (its partition stays paused meanwhile), until it opens or ``tp``
        is no longer this worker's."""
        attempt = 0
        while (not self._closed and self._lanes.get(tp) is replaced
               and tp in self.consumer.assignment()):
            try:
                await self.open([tp])
                return
            except KafkaError as exc:
                delay = BACKOFF_S[min(attempt, len(BACKOFF_S) - 1)]
                attempt += 1
                logger.warning("opening the transactional producer of %s failed (%s); "
                               "retrying in %.1fs", tp, exc, delay)
                await asyncio.sleep(delay)

    # -- assignment ------------------------------------------------------------------------

    async def assign(self, tps: Iterable[TopicPartition]) -> None:
        """Open lanes for newly assigned partitions; those the broker refuses now (it is away,
        or their previous holder's transaction is still completing) stay paused and are opened
        in the background, so a rebalance never waits on a broker outage."""
        tps = list(tps)
        try:
            await self.open(tps)
        except KafkaError as exc:
            logger.warning("opening the transactional producers of %s failed (%s); retrying "
                           "in the background", sorted((tp.topic, tp.partition) for tp in tps),
                           exc)
            for tp in tps:
                if tp not in self._lanes and tp not in self._restarts:
                    self._restarts[tp] = self._spawn(self._restart(tp, None))

    async def open(self, tps: Iterable[TopicPartition]) -> None:
        """New lanes for these partitions: fence their previous holders, then seek each to its
        committed offset (stable now: no transaction of its id is open any more)."""
        tps = list(tps)
        if not tps:
            return
        self.consumer.pause(*tps)
        started = await asyncio.gather(*(self._producer(tp) for tp in tps),
                                       return_exceptions=True)
        producers = [p for p in started if isinstance(p, AIOKafkaProducer)]
        failed = [e for e in started if isinstance(e, BaseException)]
        if failed or self._closed:
            await asyncio.gather(*(close_transactional(p, self.settings.drain_timeout_s)
                                   for p in producers))
            if failed:
                raise failed[0]
            return
        lanes = []
        try:
            for tp, producer in zip(tps, producers, strict=True):
                committed = await self.consumer.committed(tp)
                if committed is None:
                    await self.consumer.seek_to_beginning(tp)
                    start = await self.consumer.position(tp)
                else:
                    self.consumer.seek(tp, committed)
                    start = committed
                lanes.append(Lane(tp, producer, start))
                logger.debug("lane of %s opened at offset %d (committed %s)", tp, start, committed)
        except BaseException:
            await asyncio.shield(asyncio.gather(
                *(close_transactional(p, self.settings.drain_timeout_s) for p in producers)))
            raise
        for lane in lanes:
            old = self._lanes.get(lane.tp)
            self._lanes[lane.tp] = lane
            if old is not None:
                await _close(old, self.settings.drain_timeout_s)
        self.consumer.resume(*(tp for tp in tps if tp in self.consumer.assignment()))

    async def _producer(self, tp: TopicPartition) -> AIOKafkaProducer:
        s = self.settings
        producer = AIOKafkaProducer(
            **s.producer_options(), client_id=f"{s.worker_id}-{tp.partition}",
            transactional_id=self.transactional_id(tp),
            transaction_timeout_ms=s.transaction_timeout_ms)
        try:
            # InitProducerId waits for the previous holder's transaction to complete, and
            # for a broker that is away: bounded, so the caller can retry (a later init
            # fences just as well).
            await asyncio.wait_for(producer.start(), CALL_TIMEOUT_S)
        except TimeoutError as exc:
            await asyncio.shield(producer.stop())
            raise KafkaTimeoutError(f"InitProducerId of {self.transactional_id(tp)} took "
                                    f"over {CALL_TIMEOUT_S}s") from exc
        except BaseException:
            await asyncio.shield(producer.stop())  # cancelled or refused: never left unclosed
            raise
        return producer

    async def close(self, tps: Iterable[TopicPartition] | None = None) -> None:
        """Commit and close the lanes of these partitions (all by default: for good, so a lane
        still being opened is closed as soon as it is)."""
        if tps is None:
            self._closed = True
            if self._tick is not None:
                self._tick.cancel()
                self._tick = None
        tps = list(self._lanes.keys() | self._restarts.keys()) if tps is None else list(tps)
        chosen = [tp for tp in tps if tp in self._lanes]
        await self.flush(chosen)
        lanes = [self._lanes.pop(tp) for tp in chosen]
        # A lane still being reopened stops too, lane or not yet: an InitProducerId it sent
        # after the partition moved would fence the partition's new owner.
        await cancel_and_wait(*(self._restarts.pop(tp, None) for tp in tps))
        for tp in tps:
            self._failures.pop(tp, None)
        await asyncio.gather(*(_close(lane, self.settings.drain_timeout_s) for lane in lanes))

    def abandon(self) -> None:
        """Batches were given up uncommitted: their lanes' open transactions must not commit
        later batches past them."""
        for lane in list(self._lanes.values()):
            self._fail(lane, Superseded(lane.tp), restart=False)


async def _close(lane: Lane, timeout: float) -> None:
    """Close a lane's producer: a lane that failed or was abandoned gives its transaction up
    (the next ``InitProducerId`` of its id aborts it), a healthy one aborts what it has open."""
    failed = lane.closed
    lane.closed = True
    await close_transactional(lane.producer, min(timeout, GIVE_UP_S) if failed else timeout,
                              give_up=failed)


async def close_transactional(producer: AIOKafkaProducer, timeout: float,
                              give_up: bool = False) -> None:
    """Abort what a transactional producer has open (a fenced one cannot: the next holder's
    init or the broker's timeout does) and close it in bounded time.

    ``give_up``: its transaction failed; nothing is aborted or flushed, and a producer that
    does not close within ``timeout`` (its sender still waiting on a broker) is left behind.
    """
    state = producer._txn_manager  # noqa: SLF001 - no public transaction state
    if give_up:
        producer._message_accumulator.fail_all(  # noqa: SLF001 - no public way to give up
            KafkaError("the transaction was given up"))
    elif state is not None and state.is_in_transaction():
        with contextlib.suppress(KafkaError, TimeoutError):
            await asyncio.wait_for(producer.abort_transaction(), timeout)
    waiter = state.wait_for_transaction_end() if state is not None else None
    if waiter is not None and waiter.done() and not waiter.cancelled():
        waiter.exception()  # a fenced transaction's end, already told to whoever waited
    if not give_up:
        await stop_producer(producer, timeout)
        return
    try:
        await asyncio.wait_for(producer.stop(), timeout)
    except TimeoutError:
        logger.warning("a transactional producer (%s) did not close within %.1fs; left behind",
                       producer.client._client_id, timeout)  # noqa: SLF001
