"""Reading the reply topic into the result store, and waking whoever waits for a result.

**Every replica reads the whole reply topic** (all partitions, manual assignment, no consumer
group, no commits). Any replica behind a load balancer can then answer ``GET``, ``?wait=`` and
WebSocket subscriptions for any id, whichever replica accepted it, with no routing or sticky
sessions. The cost is that each replica parses every result: a few microseconds per record,
so one replica keeps up with tens of thousands of results per second. Past that, requests
would carry a reply route (a reply partition per replica, in a header the worker honours) and
each replica would read only its own partition; the store and waiters below stay the same.

**Tenants.** A result is filed under the tenant its record's ``tenant`` header names (the
worker copies it from the request), so only that tenant's callers see it.

**Recovery.** At start-up the reader seeks each partition to the first record newer than
``recover_window_s`` (default: the TTL) and reads forward, so a restart remembers what was just
computed.

**Caught up.** ``caught_up`` is set once the reader's position on every partition has reached
the end offset that partition had when the reader started (a ``ListOffsets`` request), so
everything written before start-up is remembered.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import Any

import orjson
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.errors import KafkaError

from core.tasks import cancel_and_wait
from producer_api.errors import NotStartedError
from producer_api.settings import ApiSettings
from producer_api.stats import ApiStats
from producer_api.store import ResultStore, scoped
from schemas.messages import tenant_of

logger = logging.getLogger(__name__)

_POLL_MS = 200
_MAX_RECORDS = 1_000
_STATUSES = ("ok", "error", "expired")  # a tuple: ``in`` compares, never hashes a bad value


class ReaderStopped(Exception):
    """The result reader stopped; whoever waits for a result will not get it from here."""


ResultListener = Callable[[str, bytes], None]
"""Called with the store key (``store.scoped``: tenant and id) and the document of each new
result."""


class ResultReader:
    """Reads every partition of the reply topic into the store; tells listeners of each result.

    Each new result is counted by status; results published after the reader started also
    have their end-to-end latency observed (request enqueued → result read here). Results
    re-read at start-up are not: their latency would be the recovery window.
    """

    def __init__(self, settings: ApiSettings, store: ResultStore,
                 stats: ApiStats | None = None) -> None:
        self.settings = settings
        self.store = store
        self.stats = stats or ApiStats()
        self.caught_up = asyncio.Event()
        self.listeners: list[ResultListener] = []
        self.traced: Callable[[Any], None] | None = None  # with tracing on: each live record
        self.records = 0
        self.malformed = 0
        self._consumer: AIOKafkaConsumer | None = None
        self._task: asyncio.Task[None] | None = None
        self._ends: dict[TopicPartition, int] = {}

    @property
    def running(self) -> bool:
        """The read loop is alive."""
        return self._task is not None and not self._task.done()

    async def start(self, partitions: set[int]) -> None:
        """Assign every partition, seek to the recovery window, start the read loop."""
        s = self.settings
        self._consumer = AIOKafkaConsumer(**s.reader_options())
        await self._consumer.start()
        tps = [TopicPartition(s.results_topic, p) for p in sorted(partitions)]
        self._consumer.assign(tps)
        # The ends first: a partition with nothing recent is read from its end as it was before
        # the lookup, so a result written meanwhile is read, not skipped.
        self._ends = await self._consumer.end_offsets(tps)
        await self._seek_recent(tps, time.time() - s.recover_s)
        self._task = asyncio.get_running_loop().create_task(self._run(), name="result-reader")
        self._task.add_done_callback(self._on_done)

    async def stop(self) -> None:
        """Stop reading and close the consumer; safe to call twice."""
        task, self._task = self._task, None
        await cancel_and_wait(task)
        consumer, self._consumer = self._consumer, None
        if consumer is not None:
            await _stop_consumer(consumer)

    async def _seek_recent(self, tps: list[TopicPartition], since: float) -> None:
        consumer = self._require()
        try:
            found = await consumer.offsets_for_times({tp: int(since * 1000) for tp in tps})
        except KafkaError as exc:
            logger.warning("offsets_for_times failed (%s); reading the reply topic from the "
                           "beginning", exc)
            await consumer.seek_to_beginning(*tps)
            return
        for tp in tps:
            hit = found.get(tp)
            if hit is None:
                consumer.seek(tp, self._ends[tp])  # nothing that recent: what comes next
            else:
                consumer.seek(tp, hit.offset)
        logger.info("result reader starts at %s", {tp.partition: (h.offset if h else "end")
                                                   for tp, h in found.items()})

    async def _run(self) -> None:
        consumer = self._require()
        recover_from = time.time() - self.settings.recover_s
        live_from_ms = time.time() * 1000
        while True:
            try:
                fetched = await consumer.getmany(timeout_ms=_POLL_MS, max_records=_MAX_RECORDS)
            except KafkaError as exc:
                logger.warning("reading results failed (%s); retrying", exc)
                await asyncio.sleep(0.5)
                continue
            for records in fetched.values():
                for record in records:
                    if record.timestamp / 1000.0 >= recover_from:
                        self._handle(record.value, record.timestamp >= live_from_ms,
                                     tenant_of(record.headers) if record.headers else "")
                        if self.traced is not None and record.timestamp >= live_from_ms:
                            self.traced(record)
            if not self.caught_up.is_set() and await self._reached_ends(consumer):
                self.caught_up.set()
                logger.info("result reader caught up: %d results remembered", len(self.store))
            self.store.sweep()
            # getmany() returns buffered records without suspending: let the WebSocket
            # senders drain what this batch queued before the next one arrives.
            await asyncio.sleep(0)

    async def _reached_ends(self, consumer: AIOKafkaConsumer) -> bool:
        """Every partition was read up to where it ended when the reader started."""
        for tp, end in self._ends.items():
            if await consumer.position(tp) < end:
                return False
        return True

    def _handle(self, value: bytes | None, live: bool = True, tenant: str = "") -> None:
        self.records += 1
        try:
            doc: Any = orjson.loads(value or b"")
            request_id, op = doc["id"], doc.get("op", "")
            if not isinstance(request_id, str) or not isinstance(op, str):
                raise TypeError("id and op must be strings")
        except (orjson.JSONDecodeError, KeyError, TypeError) as exc:
            self.malformed += 1
            logger.debug("skipping a malformed result record: %s", exc)
            return
        assert value is not None
        key = scoped(tenant, request_id)
        if self.store.put_result(key, op, value):
            stats = self.stats
            status = doc.get("status")
            stats.results[status if status in _STATUSES else "other"] += 1
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

    def _require(self) -> AIOKafkaConsumer:
        if self._consumer is None:
            raise NotStartedError("the result reader is not started")
        return self._consumer


async def _stop_consumer(consumer: AIOKafkaConsumer) -> None:
    """``consumer.stop()``, surviving an aiokafka 0.14 quirk.

    When a fetch is in its retry back-off (the broker went away), ``Fetcher.close`` cancels it
    and awaits it without catching the ``CancelledError``, which escapes ``stop()`` before the
    client's connections are closed. That error is not a cancellation of this task: finish
    closing instead of failing the whole shutdown.
    """
    try:
        await consumer.stop()
    except asyncio.CancelledError:
        current = asyncio.current_task()
        if current is not None and current.cancelling():
            raise
        logger.debug("aiokafka let a cancelled fetch escape stop(); closing its client")
        await consumer._client.close()  # noqa: SLF001 - stop() skipped it, see above
