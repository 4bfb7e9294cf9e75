"""The attempts journal as the worker keeps it (the journal itself: ``attempts.py``).

It reads a partition's journal when the worker first sees a record of it (writing
``acquired``), writes an ``attempt`` mark before computing a batch of a partition whose last
owner died (acknowledged before the computation starts), hands back the ``computed`` marks to
publish with the results, and writes ``released`` when partitions are given up cleanly.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable, Sequence

from aiokafka import AIOKafkaConsumer, TopicPartition

from consumer.attempts import AttemptJournal, JournalRecord, ensure_journal_topic
from consumer.batching import TP, Positioned
from consumer.publishing import BatchPublisher, journal_records
from consumer.settings import WorkerSettings
from core.connections import stop_consumer

logger = logging.getLogger(__name__)


class JournalKeeper:
    """Reads and writes one worker's share of the attempts journal."""

    def __init__(self, journal: AttemptJournal, reader: AIOKafkaConsumer,
                 consumer: AIOKafkaConsumer, publisher: BatchPublisher) -> None:
        self.journal = journal
        self._reader = reader
        self._consumer = consumer
        self._publisher = publisher

    @classmethod
    async def open(cls, settings: WorkerSettings, partitions: int, consumer: AIOKafkaConsumer,
                   publisher: BatchPublisher) -> JournalKeeper:
        """Make sure the journal topic exists and start its reader."""
        s = settings
        await ensure_journal_topic(s, s.journal_topic, partitions,
                                   s.replication_factor, create=s.create_topics)
        # read_committed: a ``computed`` mark of an aborted transaction (exactly_once) never
        # counts, so a computation whose batch could not commit counts as a death.
        reader = AIOKafkaConsumer(
            **s.connection_options(), client_id=f"{s.worker_id}-journal", group_id=None,
            enable_auto_commit=False, fetch_max_wait_ms=s.fetch_max_wait_ms,
            isolation_level="read_committed")
        await reader.start()
        return cls(AttemptJournal(s.journal_topic, partitions, s.worker_id), reader, consumer,
                   publisher)

    async def close(self) -> None:
        """Stop the reader; safe to call twice."""
        await stop_consumer(self._reader)

    async def suspects(self, records: Sequence[Positioned]) -> dict[TP, int]:
        """Per partition, the offset of the last of these records that a worker died while
        computing (none: an empty dict). Reads the journal of partitions seen for the first
        time since they were assigned."""
        journal = self.journal
        seen = {(r.topic, r.partition) for r in records}
        new = {tp for tp in seen if not journal.loaded(tp)}
        if new:
            committed = {tp: await self._consumer.committed(TopicPartition(*tp)) or 0
                         for tp in new}
            await self._send(await journal.load(self._reader, committed))
        last: dict[TP, int] = {}
        if not any(journal.unfinished(tp) for tp in seen):
            return last  # the usual case: no record to look up one by one
        for r in records:
            if journal.prior(r):
                tp = (r.topic, r.partition)
                last[tp] = max(r.offset, last.get(tp, -1))
        return last

    def prior(self, record: Positioned) -> int:
        """How many times computing this record started and never finished."""
        return self.journal.prior(record)

    async def starting(self, records: Sequence[Positioned]) -> None:
        """Mark an attempt at these records, acknowledged, before they are computed."""
        await self._send(self.journal.start(records))

    async def finished(self, records: Sequence[Positioned]) -> None:
        """Mark these records computed now, acknowledged."""
        await self._send(self.journal.computed(records))

    def computed(self, records: Sequence[Positioned]) -> list[JournalRecord]:
        """The marks to publish with the results of these computed records."""
        return self.journal.computed(records)

    def committed(self, offsets: dict[TP, int]) -> None:
        """Forget attempts of records now committed."""
        self.journal.committed(offsets)

    async def release(self, tps: Iterable[TopicPartition], timeout: float) -> None:
        """Mark partitions given up cleanly (best effort: if the broker does not take it in
        time, their next owner just journals its attempts)."""
        try:
            async with asyncio.timeout(timeout):
                await self._send(self.journal.released([(tp.topic, tp.partition)
                                                        for tp in tps]))
        except TimeoutError:
            logger.warning("could not mark partitions released in the attempts journal")

    def revoked(self, tps: Iterable[TopicPartition]) -> None:
        """Forget partitions given up without a clean hand-over."""
        self.journal.revoked((tp.topic, tp.partition) for tp in tps)

    async def _send(self, marks: list[JournalRecord]) -> None:
        await self._publisher.send(journal_records(marks))
