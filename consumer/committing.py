"""Committing: each partition's offset moves only past batches that are published, in fetch
order, even when batches finish out of order."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterable

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.errors import CommitFailedError, KafkaError

from consumer.batching import TP, CommitLog, Positioned
from consumer.stats import WorkerStats

logger = logging.getLogger(__name__)


class Committer:
    """Commits the finished prefix of the batches opened so far, for assigned partitions.

    ``on_committed`` hears the offsets each time a commit succeeds (the attempts journal
    forgets what lies before them).
    """

    def __init__(self, consumer: AIOKafkaConsumer, stats: WorkerStats,
                 on_committed: Callable[[dict[TP, int]], None] | None = None) -> None:
        self.consumer = consumer
        self.stats = stats
        self.on_committed = on_committed
        self._log = CommitLog()
        self._lock = asyncio.Lock()

    def __len__(self) -> int:
        """Batches opened and not yet committed."""
        return len(self._log)

    def open(self, records: Iterable[Positioned]) -> object:
        """Register a batch in fetch order; the token for ``finish``."""
        return self._log.open(records)

    def finish(self, token: object) -> None:
        """The batch's records are all acknowledged."""
        self._log.finish(token)

    def forget(self) -> None:
        """Drop every open batch: they were abandoned uncommitted (delivered again)."""
        self._log = CommitLog()

    async def commit(self) -> None:
        """Commit what became committable; a refused commit is counted and logged, not raised
        (its records go to the partitions' next owner)."""
        async with self._lock:
            ready = self._log.committable()
            assigned = self.consumer.assignment()
            offsets = {
                tp: offset
                for (topic, partition), offset in ready.items()
                if (tp := TopicPartition(topic, partition)) in assigned
            }
            if not offsets:
                return
            try:
                await self.consumer.commit(offsets)
            except CommitFailedError as exc:
                self.stats.commit_failures += 1
                logger.warning("commit refused, the group moved on; these records will be "
                               "redelivered to their new owner: %s (%s)", offsets, exc)
                return
            except KafkaError as exc:
                self.stats.commit_failures += 1
                logger.error("commit failed: %s (%s)", offsets, exc)
                return
            if self.on_committed is not None:
                self.on_committed({(tp.topic, tp.partition): o for tp, o in offsets.items()})
