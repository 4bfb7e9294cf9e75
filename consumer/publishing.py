"""Publishing a batch: its results, dead letters and journal marks, acknowledged before anything
of it may be committed."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence

from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError

from consumer.attempts import JournalRecord
from consumer.outbox import Outgoing, send_all
from consumer.processing import BatchOutput
from consumer.stats import WorkerStats
from schemas.topics import Topics

logger = logging.getLogger(__name__)

BACKOFF_S = (0.1, 0.2, 0.5, 1.0, 2.0)


class BatchPublisher:
    """Sends records and waits for every ack, re-sending only the refused ones until acked.

    Broker errors are retried with a growing back-off (a topic that refuses writes for a while
    does not fill the others with copies of the same batch); anything else is a bug and raises.
    """

    def __init__(self, producer: AIOKafkaProducer, topics: Topics, stats: WorkerStats) -> None:
        self.producer = producer
        self.topics = topics
        self.stats = stats

    async def publish(self, output: BatchOutput, marks: Sequence[JournalRecord] = ()) -> None:
        """Every dead letter and result of a batch, with its journal marks."""
        await self.send(outgoing(self.topics, output, marks))

    async def send(self, pending: list[Outgoing]) -> None:
        """Produce ``pending`` and return once the broker acknowledged all of it."""
        attempt = 0
        while pending:
            pending, errors = await send_all(self.producer, pending)
            for error in errors:
                if not isinstance(error, KafkaError):
                    raise error
            if pending:
                self.stats.publish_retries += 1
                delay = BACKOFF_S[min(attempt, len(BACKOFF_S) - 1)]
                attempt += 1
                logger.warning("publishing %d records failed (%s); retrying in %.1fs",
                               len(pending), errors[0], delay)
                await asyncio.sleep(delay)


def outgoing(topics: Topics, output: BatchOutput,
             marks: Sequence[JournalRecord] = ()) -> list[Outgoing]:
    """A batch's records to produce: dead letters, results (to their reply partitions) and
    journal marks."""
    pending: list[Outgoing] = [
        (topics.dlq, None, d.key, d.value, d.headers) for d in output.dead_letters
    ]
    pending += [(topics.results, r.partition, r.key, r.value, r.headers)
                for r in output.results]
    pending += journal_records(marks)
    return pending


def journal_records(marks: Sequence[JournalRecord]) -> list[Outgoing]:
    """Journal records as records to produce (to their explicit partitions)."""
    return [(j.topic, j.partition, j.key, j.value, None) for j in marks]
