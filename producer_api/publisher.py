"""Publishing request records: nothing counts as accepted until the broker acknowledged it.

Each publish is bounded by ``publish_timeout_s``: a broker that is down or slow turns into
``Unavailable`` (503 with Retry-After) rather than a hung request. A record that timed out may
still reach the broker later (the idempotent producer keeps retrying it in the background, and
never writes it twice), so a 503 means "outcome unknown": clients that need exactly-once
effects re-post with the same client id, which the API de-duplicates.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from typing import Any, Generic, TypeVar

from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError

from core.connections import ended_metadata_task
from core.producers import stop_producer
from producer_api.errors import NotStartedError, Unavailable
from producer_api.intake import Prepared
from producer_api.settings import ApiSettings
from producer_api.stats import ApiStats
from schemas.topics import partition_of

logger = logging.getLogger(__name__)

_PROBE_EVERY_S = 1.0

T = TypeVar("T")


class Publisher:
    """The API's Kafka producer (acks=all). ``start()``/``stop()``."""

    def __init__(self, settings: ApiSettings, stats: ApiStats | None = None) -> None:
        self.settings = settings
        self.stats = stats or ApiStats()
        self.topic = settings.requests_topic
        self.timeout = settings.publish_timeout_s
        self._producer: AIOKafkaProducer | None = None
        self._probed_at = -_PROBE_EVERY_S
        self._reachable = False

    async def start(self) -> None:
        """Connect the producer."""
        self._producer = AIOKafkaProducer(partitioner=keyed_partitioner,
                                          **self.settings.producer_options())
        await self._producer.start()

    async def stop(self) -> None:
        """Flush (for at most the publish timeout) and close the producer; safe to call
        twice."""
        producer, self._producer = self._producer, None
        if producer is not None:
            await stop_producer(producer, self.timeout)

    async def partitions_for(self, topic: str) -> set[int]:
        """The partition numbers of a topic (waits for its metadata)."""
        partitions: set[int] = await self._require().partitions_for(topic)
        return partitions

    async def publish(self, item: Prepared) -> None:
        """Send one record and wait for its ack; ``Unavailable`` after the publish timeout.

        The time from send to ack is observed in ``stats.publish_seconds``.
        """
        producer = self._require()
        started = time.perf_counter()
        try:
            async with asyncio.timeout(self.timeout):
                ack = await producer.send(self.topic, item.value, key=item.key,
                                          headers=item.headers)
                await ack
        except (TimeoutError, KafkaError) as exc:
            raise _unavailable(exc) from None
        self.stats.publish_seconds.observe(time.perf_counter() - started)

    def batch(self) -> BatchSender[Any]:
        """A sender for many records with a bounded number awaiting their ack."""
        return BatchSender(self._require(), self.topic, self.timeout,
                           self.settings.batch_in_flight)

    async def reachable(self) -> bool:
        """The broker answered a metadata request (checked at most once a second), and the
        producer's own metadata task still runs."""
        if ended_metadata_task(self._require().client) is not None:
            return False
        now = time.monotonic()
        if now - self._probed_at >= _PROBE_EVERY_S:
            self._probed_at = now
            try:
                async with asyncio.timeout(_PROBE_EVERY_S):
                    await self._require().client.fetch_all_metadata()
                self._reachable = True
            except (TimeoutError, KafkaError, OSError):
                self._reachable = False
        return self._reachable

    def _require(self) -> AIOKafkaProducer:
        if self._producer is None:
            raise NotStartedError("the publisher is not started; the app's lifespan starts it")
        return self._producer


def keyed_partitioner(key: bytes | None, all_partitions: list[int],
                      available: list[int]) -> int:
    """aiokafka's partitioner hook for ``schemas.topics.partition_of`` (unkeyed: the first)."""
    if key is None:
        return all_partitions[0]
    return partition_of(key, all_partitions)


class BatchSender(Generic[T]):
    """Sends records in order; ``send`` and ``flush`` return the tags acknowledged meanwhile.

    At most ``window`` records wait for their ack; beyond that ``send`` waits for the oldest,
    which paces a streamed body to what the broker takes. Any failed or late ack raises
    ``Unavailable``; ``pending`` then lists the tags whose fate is unknown.
    """

    def __init__(self, producer: AIOKafkaProducer, topic: str, timeout: float,
                 window: int) -> None:
        self._producer = producer
        self._topic = topic
        self._timeout = timeout
        self._window = window
        self._pending: deque[tuple[T, asyncio.Future[Any]]] = deque()

    @property
    def pending(self) -> list[T]:
        """Tags of records sent but not known to be acknowledged."""
        return [tag for tag, _ in self._pending]

    async def send(self, item: Prepared, tag: T) -> list[T]:
        """Send one record; return the tags whose acks arrived."""
        try:
            async with asyncio.timeout(self._timeout):
                ack = await self._producer.send(self._topic, item.value, key=item.key,
                                                headers=item.headers)
        except (TimeoutError, KafkaError) as exc:
            self._abandon()
            raise _unavailable(exc) from None
        self._pending.append((tag, ack))
        acked = self._collect()
        while len(self._pending) >= self._window:
            await self._settle_oldest()
            acked += self._collect()
        return acked

    async def flush(self) -> list[T]:
        """Wait for every outstanding ack; return the tags acknowledged."""
        acked = self._collect()
        while self._pending:
            await self._settle_oldest()
            acked += self._collect()
        return acked

    async def _settle_oldest(self) -> None:
        _, ack = self._pending[0]
        try:
            await asyncio.wait_for(asyncio.shield(ack), self._timeout)
        except (TimeoutError, KafkaError) as exc:
            self._abandon()
            raise _unavailable(exc) from None

    def _collect(self) -> list[T]:
        done: list[T] = []
        while self._pending and self._pending[0][1].done():
            tag, ack = self._pending[0]
            exc = ack.exception()
            if exc is not None:
                self._abandon()
                raise _unavailable(exc)
            self._pending.popleft()
            done.append(tag)
        return done


    def _abandon(self) -> None:
        """Nobody will await the outstanding acks: consume their outcome quietly."""
        for _, ack in self._pending:
            ack.add_done_callback(_ignore_outcome)


def _ignore_outcome(fut: asyncio.Future[Any]) -> None:
    if not fut.cancelled():
        fut.exception()


_last_warning = [0.0]


def _unavailable(exc: BaseException) -> Unavailable:
    reason = "no ack in time" if isinstance(exc, TimeoutError) else f"{type(exc).__name__}"
    now = time.monotonic()
    if now - _last_warning[0] > 5.0:  # one line per outage burst, not one per request
        _last_warning[0] = now
        logger.warning("publishing failed: %s (%s)", reason, exc)
    return Unavailable(f"the broker did not acknowledge the request ({reason}); retry later")
