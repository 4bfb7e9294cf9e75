"""Reading the reply topic into the result store, and waking whoever waits for a result.

**Reply routing.** The API replicas share the result topic's partitions: they are one
consumer group on it (``reply_group``, nothing committed), so Kafka gives each replica a share
and moves partitions when replicas join or leave. A replica reads its share, and another
partition only while someone here asks about an id there; a result costs the replica that owns
its partition, not every replica.

- *Where a result goes.* An id's reply partition is ``partition_of(id)`` over the result
  topic's partitions (``routing.ReplyRoutes``): the partition a result keyed by that id always
  went to, so every replica can tell it from the id alone, whoever accepted it and whichever
  replica owns that partition now. The API stamps it into each request's ``reply-partition``
  header and the worker writes the result there (``consumer.processing``); requests of outside
  producers without the header are keyed by id, which is the same partition. The ids the API
  assigns are drawn until they land on a partition the accepting replica owns, so the
  ``?wait=`` and WebSocket watch of a submit are answered from that replica's own share.
- *Asked about an id elsewhere.* ``GET`` of an id without a result here, on a replica that
  does not own the id's partition, borrows it: a second consumer (no group) reads that
  partition from the recovery window, and the ``GET`` waits until it has read up to where the
  partition ended (at most ``reply_lookup_s``, then 503), then answers from the store. The
  partition stays borrowed ``reply_borrow_s`` after the last ``GET`` there, so polling an id
  costs one read of its partition, not one per poll. A ``?wait=`` or WebSocket watch of an
  id on a partition this replica does not own borrows it for as long as it waits; a WebSocket
  ``all`` stream borrows every partition (it promises every result).
- *Waiting for a request published here.* Its result cannot be in the topic before the request
  is, so a ``?wait=`` or WebSocket watch of a submit with a client id elsewhere (``expect``)
  borrows the partition from where it ended just before the publish, not from the recovery
  window: one result read, not the window's. A partition borrowed that way is read again from
  the window as soon as someone here asks about an id of the past there.
- *Waiting for a request published earlier.* A WebSocket watch of an id, or a ``?wait=``
  re-post of one, whose partition another replica owns asks that replica first, when replicas
  advertise their URLs (``usecase.recall``): it answers with the result, or says up to where it
  has read the partition (``read_to``: only while its store has forgotten none of the window's
  results), and the wait borrows the partition from there (``note``); a wait noted before
  where the borrower already reads from makes it read again from there.
- *One borrower, many partitions.* A fetch of partitions with nothing new waits at the broker
  (up to ``fetch_max_wait_ms``), and a broker answers one request of a connection at a time.
  So that a new borrow never waits behind the fetch of those already borrowed, offsets are
  looked up through a consumer that never fetches, the borrower stops waiting for its fetch
  as soon as someone waits for a partition it does not read yet, and each change of what it
  borrows moves the reading to its other consumer, whose connection that fetch does not hold.
- *Partitions move.* When the group takes a partition from this replica, its position is
  kept; if someone here still waits for an id there, the borrower reads on from that position,
  so nothing written meanwhile is missed. A partition this replica gains, or borrows, is read
  from the recovery window, or from its own kept position when it had it before and that is
  newer, and ``GET`` for its ids waits until that read reached where the partition ended. A
  replica that is killed takes its waiters with it; their clients retry elsewhere, and the
  replica they reach owns or borrows the partition, as above.

Off (``reply_routing=false``) every replica assigns itself every partition, as before.

**Tenants.** A result is filed under the tenant its record's ``tenant`` header names (the
worker copies it from the request), so only that tenant's callers see it.

**Recovery.** A partition is read from the first record newer than ``recover_window_s``
(default: the TTL), so a replica remembers what was just computed there.

**Caught up.** ``caught_up`` is set once every partition of this replica's first share has
been read up to the end offset it had when it was assigned (a ``ListOffsets`` request).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Coroutine, Iterable
from typing import Any

import orjson
from aiokafka import AIOKafkaConsumer, ConsumerRebalanceListener, TopicPartition
from aiokafka.errors import IllegalStateError, KafkaError

from core.connections import ended_metadata_task, stop_consumer
from core.tasks import being_cancelled, cancel_and_wait
from producer_api.errors import NotStartedError
from producer_api.forwarding import AdvertisingAssignor
from producer_api.routing import ReplyRoutes
from producer_api.settings import ApiSettings
from producer_api.stats import ApiStats
from producer_api.store import ResultStore, scoped
from schemas.encoding import DecodeError, is_result_frame, result_meta
from schemas.messages import RESULT_STATUSES, tenant_of

logger = logging.getLogger(__name__)

_POLL_MS = 200
_MAX_RECORDS = 1_000
_DEMAND_S = 0.1  # how often the borrower looks at what is waited for


class ReaderStopped(Exception):
    """The result reader stopped; whoever waits for a result will not get it from here."""


Fetched = dict[TopicPartition, list[Any]]
"""What ``getmany`` returns: records by partition."""

ResultListener = Callable[[str, bytes], None]
"""Called with the store key (``store.scoped``: tenant and id) and the document of each new
result."""


class _Feed:
    """One consumer of the reply topic and how far each of its partitions has been read."""

    def __init__(self, consumer: AIOKafkaConsumer, name: str) -> None:
        self.consumer = consumer
        self.name = name
        self.complete: set[int] = set()  # read up to where it ended when reading began
        self.targets: dict[TopicPartition, int] = {}  # end offsets still to reach
        self.live_from_ms: dict[int, float] = {}  # when reading began: newer results get their
        # latency observed, and results older than the recovery window before it are skipped

    def drop(self, partitions: Iterable[int]) -> None:
        """No longer read here."""
        gone = set(partitions)
        self.complete -= gone
        for p in gone:
            self.live_from_ms.pop(p, None)
        self.targets = {tp: end for tp, end in self.targets.items() if tp.partition not in gone}


class ResultReader:
    """Reads this replica's share of the reply topic, and others' partitions on demand, into
    the store; tells listeners of each result.

    Each new result is counted by status; results published after their partition began to be
    read here also have their end-to-end latency observed (request enqueued → result read
    here). Results re-read from the recovery window are not: their latency would be the window.
    """

    def __init__(self, settings: ApiSettings, store: ResultStore,
                 stats: ApiStats | None = None) -> None:
        self.settings = settings
        self.store = store
        self.stats = stats or ApiStats()
        self.routes = ReplyRoutes()
        self.caught_up = asyncio.Event()
        self.listeners: list[ResultListener] = []
        self.traced: Callable[[Any], None] | None = None  # with tracing on: each live record
        self.demands: list[Callable[[], Iterable[str]]] = []
        """Store keys someone here waits for (``?wait=``, WebSocket watches)."""
        self.wants_all: Callable[[], bool] = lambda: False
        """Someone here watches every result (a WebSocket ``all`` stream)."""
        self.records = 0
        self.malformed = 0
        self.borrowed: frozenset[int] = frozenset()
        self._share: _Feed | None = None
        self._borrower: _Feed | None = None
        self._spare: AIOKafkaConsumer | None = None  # the borrower's other consumer
        self._lookups: AIOKafkaConsumer | None = None  # offsets only: it never fetches, so a
        # lookup never waits at the broker behind a fetch of the same connection (a broker
        # answers one request of a connection at a time, and an idle fetch waits there up to
        # fetch_max_wait_ms)
        self._tasks: list[asyncio.Task[None]] = []
        self._assigned = False
        self._rebalancing = False
        self._handoff: dict[int, int] = {}  # positions of the partitions last taken away
        self._leases: dict[int, float] = {}  # borrowed for GETs until (monotonic)
        self._expected: dict[str, tuple[int, float]] = {}  # store key → (offset its result
        # comes after, when noted (monotonic)): requests published here that someone waits for
        self._started: dict[int, int] = {}  # borrowed partitions read from such an offset
        self._wake = asyncio.Event()
        self._changed = asyncio.Event()

    @property
    def running(self) -> bool:
        """The read loops are alive, and so are their consumers' metadata tasks."""
        consumers = [feed.consumer for feed in (self._share, self._borrower) if feed is not None]
        consumers += [c for c in (self._spare, self._lookups) if c is not None]
        return (bool(self._tasks) and not any(t.done() for t in self._tasks)
                and all(ended_metadata_task(c._client) is None for c in consumers))

    @property
    def owned(self) -> frozenset[int]:
        """The partitions of this replica's share."""
        return self.routes.owned

    async def start(self, partitions: set[int]) -> None:
        """Join the reply group (or assign every partition) and start the read loops."""
        s = self.settings
        self.routes.reset(partitions)
        routed = s.reply_routing
        share = share_consumer(s, self.routes.learn)
        await share.start()
        self._share = _Feed(share, "share")
        borrower, self._spare, self._lookups = (AIOKafkaConsumer(**s.reader_options())
                                                for _ in range(3))
        for consumer in (borrower, self._spare, self._lookups):
            await consumer.start()
            # The reply topic's metadata now, not at the first borrow: looking up the offsets
            # of a topic the client does not know yet waits out a 100 ms retry back-off.
            await consumer._client.add_topic(s.results_topic)  # noqa: SLF001 - no public call
        self._borrower = _Feed(borrower, "borrowed")
        if routed:
            self.routes.own(())
            share.subscribe([s.results_topic], listener=_Rebalance(self))
        else:
            tps = [TopicPartition(s.results_topic, p) for p in sorted(partitions)]
            share.assign(tps)
            await self._begin(self._share, set(partitions))
            self._assigned = True
        loop = asyncio.get_running_loop()
        self._tasks = [loop.create_task(self._read_share(), name="result-reader"),
                       loop.create_task(self._read_borrowed(), name="result-borrower")]
        for task in self._tasks:
            task.add_done_callback(self._on_done)

    async def stop(self) -> None:
        """Stop reading, leave the group and close the consumers; safe to call twice."""
        tasks, self._tasks = self._tasks, []
        await cancel_and_wait(*tasks)
        for feed in (self._share, self._borrower):
            if feed is not None:
                await stop_consumer(feed.consumer)
        for consumer in (self._spare, self._lookups):
            if consumer is not None:
                await stop_consumer(consumer)
        self._share = self._borrower = None
        self._spare = self._lookups = None

    async def complete(self, partition: int) -> bool:
        """Wait (at most ``reply_lookup_s``) until the store holds every result of
        ``partition`` up to about now, borrowing it if it is not this replica's; False when
        that took too long."""
        if partition not in self.routes.owned:
            self._leases[partition] = time.monotonic() + self.settings.reply_borrow_s
            if partition in self._started and self._borrower is not None:
                self._borrower.complete.discard(partition)  # to be read again from the window
                self._wake.set()
            elif partition not in self.borrowed:
                self._wake.set()
        try:
            async with asyncio.timeout(self.settings.reply_lookup_s):
                while not self._is_complete(partition):
                    changed = self._changed
                    await changed.wait()
        except TimeoutError:
            return False
        return True

    async def expect(self, key: str) -> None:
        """The request of store key ``key`` is about to be published and its result will be
        waited for here: if its partition is not read here, note where it ends now, so that
        borrowing it for the wait reads from there. Never raises but to cancel, and gives up
        after ``publish_timeout_s`` (a broker away); without the note the partition is borrowed
        from the recovery window."""
        partition = self.routes.partition_of_key(key)
        if partition in self.routes.owned or self._lookups is None:
            return
        if partition in self.borrowed:
            start = self._started.get(partition)
            if start is not None:  # read on from there; an earlier offset is as good
                self.note(key, start)
            return
        tp = TopicPartition(self.settings.results_topic, partition)
        with contextlib.suppress(KafkaError, TimeoutError):
            async with asyncio.timeout(self.settings.publish_timeout_s):
                end = (await self._lookups.end_offsets([tp]))[tp]
            self.note(key, end)

    def waiting_for(self, keys: Iterable[str]) -> None:
        """Someone here began to wait for these store keys: if one is on a partition this
        replica does not own, the borrower looks at what is waited for now, not at its next
        look (every 0.1 s)."""
        owned, of_key = self.routes.owned, self.routes.partition_of_key
        if any(of_key(key) not in owned for key in keys):
            self._wake.set()

    def note(self, key: str, offset: int) -> None:
        """The result of store key ``key`` is at ``offset`` of its partition or later: a wait
        for it here that begins now borrows the partition from there (or earlier), not from the
        recovery window."""
        noted = self._expected.get(key)
        if noted is None or offset < noted[0]:
            self._expected[key] = (offset, time.monotonic())
        self._wake.set()  # the borrower runs after the caller registered its wait

    async def read_to(self, partition: int) -> int | None:
        """Up to where every result of ``partition`` in the recovery window is in the store:
        the position of a partition read whole here (owned, or borrowed from the window) while
        the store has forgotten none of them; else None."""
        if not self.store.keeps_for(self.settings.recover_s):
            return None
        tp = TopicPartition(self.settings.results_topic, partition)
        for feed in (self._share, self._borrower):
            if feed is not None and partition in feed.complete:
                with contextlib.suppress(IllegalStateError):
                    return int(await feed.consumer.position(tp))
        return None

    def _is_complete(self, partition: int) -> bool:
        return any(feed is not None and partition in feed.complete
                   for feed in (self._share, self._borrower))

    def _progressed(self) -> None:
        changed, self._changed = self._changed, asyncio.Event()
        changed.set()

    # The share: this replica's partitions.

    async def _revoked(self, revoked: Iterable[TopicPartition]) -> None:
        share = self._require(self._share)
        self._rebalancing = True
        handoff: dict[int, int] = {}
        for tp in revoked:
            # Never positioned: whoever reads it next starts from the window.
            with contextlib.suppress(IllegalStateError, KafkaError):
                handoff[tp.partition] = await share.consumer.position(tp)
        self._handoff = handoff
        self.routes.own(())
        self.routes.learn({})  # until the next assignment says who owns what
        share.drop(handoff)
        self._progressed()

    async def _assigned_share(self, assigned: Iterable[TopicPartition]) -> None:
        share = self._require(self._share)
        partitions = {tp.partition for tp in assigned}
        self.routes.own(partitions)
        await self._begin(share, partitions)
        self._assigned = True
        self._rebalancing = False
        logger.info("reply partitions owned %s, borrowed %s", sorted(partitions),
                    sorted(self.borrowed))
        self._wake.set()  # the borrower lets go of what is now owned

    async def _read_share(self) -> None:
        share = self._require(self._share)
        while True:
            await self._read(share)
            if not self.caught_up.is_set() and self._assigned and not share.targets:
                self.caught_up.set()
                logger.info("result reader caught up: %d results remembered", len(self.store))
            self.store.sweep()
            # getmany() returns buffered records without suspending: let the WebSocket
            # senders drain what this batch queued before the next one arrives.
            await asyncio.sleep(0)

    # The borrower: others' partitions, while someone here asks about them.

    async def _read_borrowed(self) -> None:
        borrower = self._require(self._borrower)
        demand_at = 0.0
        while True:
            now = time.monotonic()
            if now - demand_at >= _DEMAND_S or self._wake.is_set():
                self._wake.clear()
                demand_at = now
                if not self._rebalancing:
                    await self._reborrow(borrower, *self._wanted(now))
            if not self.borrowed:
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(_DEMAND_S):
                        await self._wake.wait()
                continue
            await self._read(borrower, until=self._wake)
            await asyncio.sleep(0)

    def _wanted(self, now: float) -> tuple[frozenset[int], dict[int, int]]:
        """Partitions someone here asks about that are not this replica's, and where to start
        those of them on which only results of requests published here are waited for."""
        self._leases = {p: until for p, until in self._leases.items() if until > now}
        expected, waited = self._expected, set()
        past = set(self._leases)  # partitions whose results of the past are asked for
        starts: dict[int, int] = {}
        of_key = self.routes.partition_of_key
        for keys in self.demands:
            for key in keys():
                if key in expected:
                    waited.add(key)
                else:
                    past.add(of_key(key))
        # A note outlives the publish it was taken for (the watch of a WebSocket submit begins
        # once the broker acknowledged it), and keeps its partition read from there meanwhile;
        # then it lasts as long as the wait.
        stale = now - self.settings.publish_timeout_s - 2 * _DEMAND_S
        self._expected = {key: noted for key, noted in expected.items()
                          if key in waited or noted[1] > stale}
        for key, (offset, _) in self._expected.items():
            partition = of_key(key)
            starts[partition] = min(offset, starts.get(partition, offset))
        if self.wants_all():
            past.update(self.routes.partitions)
        wanted = frozenset((past | set(starts)) - self.routes.owned)
        return wanted, {p: start for p, start in starts.items() if p in wanted - past}

    async def _reborrow(self, borrower: _Feed, wanted: frozenset[int],
                        starts: dict[int, int]) -> None:
        # Read from a start, now asked about the past too (read again from the window), or
        # about a result before that start (read again from there).
        rewind = {p for p, start in self._started.items()
                  if p not in starts or starts[p] < start} & wanted & self.borrowed
        if wanted == self.borrowed and not rewind:
            return
        consumer, topic = borrower.consumer, self.settings.results_topic
        kept = {p: await consumer.position(TopicPartition(topic, p))
                for p in (wanted & self.borrowed) - rewind}
        if self._spare is not None and wanted:
            # Read on through the other consumer: this one's last fetch may still wait at the
            # broker (up to fetch_max_wait_ms, for partitions with nothing new), and a fetch
            # for the new assignment on its connection would be answered only after it. (Not
            # when letting everything go: the next borrow then takes the one idle longer.)
            consumer.assign([])
            borrower.consumer, self._spare = self._spare, consumer
            consumer = borrower.consumer
        consumer.assign([TopicPartition(topic, p) for p in sorted(wanted)])
        borrower.drop((self.borrowed - wanted) | rewind)
        for p, position in kept.items():
            consumer.seek(TopicPartition(topic, p), position)
        fresh = set(wanted - self.borrowed) | rewind
        self.borrowed = wanted
        self._started = {p: start for p, start in self._started.items() if p in kept}
        self._started.update({p: starts[p] for p in fresh if p in starts})
        await self._begin(borrower, fresh, starts)
        logger.info("reply partitions borrowed %s (owned %s)", sorted(wanted),
                    sorted(self.routes.owned))
        self._progressed()

    # Both.

    async def _begin(self, feed: _Feed, partitions: set[int],
                     starts: dict[int, int] | None = None) -> None:
        """Position newly read partitions: at their ``starts``, else where this replica left
        them when they were taken away, else at the recovery window. Those not read from a
        start are complete once read up to their end now (one read from a start never is:
        ``complete`` has it read from the window first).
        """
        if not partitions:
            return
        consumer, topic = feed.consumer, self.settings.results_topic
        now_ms = time.time() * 1000
        starts = starts or {}
        tps = []
        for p in sorted(partitions):
            feed.live_from_ms.setdefault(p, now_ms)
            if p in starts:  # before any await: the fetcher never looks its position up
                consumer.seek(TopicPartition(topic, p), starts[p])
            else:
                tps.append(TopicPartition(topic, p))
        if not tps:
            return
        # The ends first: a partition with nothing recent is read from its end as it was
        # before the lookup, so a result written meanwhile is read, not skipped.
        lookups = self._require_lookups()
        ends = await lookups.end_offsets(tps)
        window = await self._window(lookups, tps, ends, time.time() - self.settings.recover_s)
        for tp in tps:
            # Where this replica left it, unless that is older than the window (a partition
            # owned before the last rebalance, hours ago): nothing to keep there.
            left = self._handoff.get(tp.partition)
            consumer.seek(tp, window[tp] if left is None else max(left, window[tp]))
        for tp in tps:
            if ends[tp] > 0:
                feed.targets[tp] = ends[tp]
            else:
                feed.complete.add(tp.partition)
        await self._progress(feed)

    async def _window(self, consumer: AIOKafkaConsumer, tps: list[TopicPartition],
                      ends: dict[TopicPartition, int], since: float) -> dict[TopicPartition, int]:
        """The first offset of each partition newer than ``since`` (its end when there is
        none); 0, read as the beginning, when the broker cannot say."""
        try:
            found = await consumer.offsets_for_times({tp: int(since * 1000) for tp in tps})
        except KafkaError as exc:
            logger.warning("offsets_for_times failed (%s); reading the reply topic from the "
                           "beginning", exc)
            return dict.fromkeys(tps, 0)  # out of range: the consumer resets to the earliest
        window = {tp: ends[tp] if found.get(tp) is None else found[tp].offset for tp in tps}
        logger.debug("reading reply partitions from %s",
                     {tp.partition: offset for tp, offset in window.items()})
        return window

    async def _read(self, feed: _Feed, until: asyncio.Event | None = None) -> None:
        """Read what the feed fetched (waiting up to ``_POLL_MS``, or ``until`` it is set)."""
        try:
            consumer = feed.consumer
            if until is None:
                fetched = await consumer.getmany(timeout_ms=_POLL_MS, max_records=_MAX_RECORDS)
            else:  # what is buffered, else wait (a task and a waiter only then)
                fetched = (await consumer.getmany(timeout_ms=0, max_records=_MAX_RECORDS)
                           or await _unless(until, consumer.getmany(
                               timeout_ms=_POLL_MS, max_records=_MAX_RECORDS)))
        except KafkaError as exc:
            logger.warning("reading results failed (%s); retrying", exc)
            await asyncio.sleep(0.5)
            return
        window_ms = self.settings.recover_s * 1000
        live_from = feed.live_from_ms
        for tp, records in fetched.items():
            self.records += len(records)
            live_ms = live_from.get(tp.partition, 0.0)
            recover_from_ms = live_ms - window_ms
            for record in records:
                if record.timestamp >= recover_from_ms:
                    self._handle(record.value, record.timestamp >= live_ms,
                                 tenant_of(record.headers) if record.headers else "")
                    if self.traced is not None and record.timestamp >= live_ms:
                        self.traced(record)
        if feed.targets:
            await self._progress(feed)

    async def _progress(self, feed: _Feed) -> None:
        """Mark partitions read up to their target complete."""
        done = False
        for tp, end in list(feed.targets.items()):
            try:
                position = await feed.consumer.position(tp)
            except IllegalStateError:
                position = None  # no longer assigned
            if position is None or position >= end:
                del feed.targets[tp]
                if position is not None:
                    feed.complete.add(tp.partition)
                done = True
        if done:
            self._progressed()

    def _handle(self, value: bytes | None, live: bool = True, tenant: str = "") -> None:
        try:
            # A binary result's metadata is all that is read of it: the values are relayed.
            doc: Any = (result_meta(value)[0] if is_result_frame(value)
                        else orjson.loads(value or b""))
            request_id, op = doc["id"], doc.get("op", "")
            if not isinstance(request_id, str) or not isinstance(op, str):
                raise TypeError("id and op must be strings")
        except (orjson.JSONDecodeError, DecodeError, KeyError, TypeError) as exc:
            self.malformed += 1
            logger.debug("skipping a malformed result record: %s", exc)
            return
        assert value is not None
        key = scoped(tenant, request_id)
        if self.store.put_result(key, op, value):
            stats = self.stats
            status = doc.get("status")
            stats.results[status if status in RESULT_STATUSES else "other"] += 1
            enqueued_at = doc.get("enqueued_at")
            if live and isinstance(enqueued_at, (float, int)):
                stats.end_to_end_seconds.observe(max(0.0, time.time() - enqueued_at))
            for listener in self.listeners:
                listener(key, value)

    def _on_done(self, task: asyncio.Task[None]) -> None:
        exc = None if task.cancelled() else task.exception()
        if exc is not None:
            logger.error("the result reader died; waiting requests fall back to 202",
                         exc_info=exc)
        self.store.fail_waiters(ReaderStopped("the result reader stopped"))

    def _require_lookups(self) -> AIOKafkaConsumer:
        if self._lookups is None:
            raise NotStartedError("the result reader is not started")
        return self._lookups

    @staticmethod
    def _require(feed: _Feed | None) -> _Feed:
        if feed is None:
            raise NotStartedError("the result reader is not started")
        return feed


def share_consumer(settings: ApiSettings, learn: Callable[[dict[int, str]], None]
                   ) -> AIOKafkaConsumer:
    """The consumer of a replica's share: with reply routing, a member of the reply group whose
    one protocol is roundrobin's shares plus who owns what, told to ``learn`` at each
    assignment (forwarding.py, which says why one protocol and not a list)."""
    return AIOKafkaConsumer(
        **settings.reader_options(group=settings.reply_routing),
        partition_assignment_strategy=(AdvertisingAssignor(settings.advertised_url, learn),))


class _Rebalance(ConsumerRebalanceListener):  # type: ignore[misc]
    """Tells the reader when the reply group moves its partitions."""

    def __init__(self, reader: ResultReader) -> None:
        self.reader = reader

    async def on_partitions_revoked(self, revoked: list[TopicPartition]) -> None:
        """Keep where each partition was read up to; stop owning them."""
        await self.reader._revoked(revoked)  # noqa: SLF001 - the reader's own listener

    async def on_partitions_assigned(self, assigned: list[TopicPartition]) -> None:
        """Own the new share and position it."""
        await self.reader._assigned_share(assigned)  # noqa: SLF001 - the reader's own listener


async def _unless(event: asyncio.Event, fetching: Coroutine[Any, Any, Fetched]) -> Fetched:
    """What ``fetching`` returns, or nothing once ``event`` is set first (someone waits for a
    partition the borrower does not read yet: it must not wait out a fetch of the others)."""
    fetch = asyncio.ensure_future(fetching)
    woken = asyncio.ensure_future(event.wait())
    try:
        await asyncio.wait((fetch, woken), return_when=asyncio.FIRST_COMPLETED)
    finally:
        woken.cancel()
        fetch.cancel()  # records not taken yet stay buffered in the consumer
    try:
        return await fetch
    except asyncio.CancelledError:
        if being_cancelled():
            raise
        return {}
