"""Kafka plumbing shared by the client commands: a broker check, a producer, a topic follower."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import KafkaConnectionError, KafkaError

from calcstream.cli.errors import BrokerDown
from core.admin import BrokerUnavailable, wait_for_broker
from core.connections import stop_consumer
from core.metadata import topic_partitions
from core.settings import BrokerSettings


async def preflight(settings: BrokerSettings, topics: Sequence[str], timeout: float) -> None:
    """Fail fast with ``BrokerDown`` unless the broker answers and has every topic in ``topics``."""
    bootstrap = settings.bootstrap_servers
    try:
        await wait_for_broker(settings, timeout=timeout)
    except BrokerUnavailable:
        raise BrokerDown(
            f"no Kafka broker answered at {bootstrap} within {timeout:g}s "
            "(start one with `calcstream dev`, or pass --bootstrap HOST:PORT)"
        ) from None
    admin = AIOKafkaAdminClient(**settings.connection_options(), request_timeout_ms=5000)
    try:
        await admin.start()
        existing = set(await admin.list_topics())
    except (KafkaError, OSError) as exc:
        raise BrokerDown(f"the broker at {bootstrap} stopped answering: {exc}") from None
    finally:
        await admin.close()
    missing = [t for t in topics if t not in existing]
    if missing:
        raise BrokerDown(
            f"topic {', '.join(missing)} does not exist at {bootstrap} "
            "(a worker or `calcstream dev` creates the topics)"
        )


def producer(settings: BrokerSettings, **overrides: Any) -> AIOKafkaProducer:
    """A producer with the deployment's options (acks=all), batching a little more for bulk."""
    options = settings.producer_options()
    options.update(linger_ms=5, max_batch_size=512 * 1024)
    options.update(overrides)
    return AIOKafkaProducer(**options)


class TopicFollower:
    """Reads every partition of some topics without a consumer group.

    Partitions are assigned by hand: a reader needs no committed offsets and no group join.
    ``start()`` resolves the starting offsets before it returns, so whatever is produced
    afterwards is seen.
    """

    def __init__(self, settings: BrokerSettings, topics: Sequence[str], *,
                 from_beginning: bool) -> None:
        self.settings = settings
        self.topics = tuple(topics)
        self.from_beginning = from_beginning
        self._consumer: AIOKafkaConsumer | None = None

    async def start(self) -> None:
        """Assign all partitions and fix the starting offsets."""
        consumer = AIOKafkaConsumer(
            **self.settings.connection_options(),
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            # Results of a worker's aborted transaction (exactly_once) are never shown.
            isolation_level="read_committed",
            fetch_max_wait_ms=10,
            max_partition_fetch_bytes=self.settings.max_message_bytes,
        )
        self._consumer = consumer
        try:
            await consumer.start()
            known = await topic_partitions(consumer, self.topics)
        except KafkaConnectionError as exc:
            raise BrokerDown(str(exc)) from None
        missing = [t for t in self.topics if t not in known]
        if missing:
            raise BrokerDown(f"topic {', '.join(missing)} does not exist")
        tps = [tp for topic in self.topics for tp in known[topic]]
        consumer.assign(tps)
        if self.from_beginning:
            await consumer.seek_to_beginning(*tps)
        else:
            await consumer.seek_to_end(*tps)
        for tp in tps:
            await consumer.position(tp)  # resolve the offset now, not at the first fetch

    async def batches(self, max_records: int = 10_000) -> AsyncIterator[list[Any]]:
        """Records as they arrive, a list per fetch; empty lists when nothing came for 200 ms."""
        if self._consumer is None:
            raise RuntimeError("TopicFollower.start() was not called")
        while True:
            fetched = await self._consumer.getmany(timeout_ms=200, max_records=max_records)
            yield [record for records in fetched.values() for record in records]

    async def stop(self) -> None:
        """Close the consumer; safe to call twice."""
        consumer, self._consumer = self._consumer, None
        if consumer is not None:
            await stop_consumer(consumer)
