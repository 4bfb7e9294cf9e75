"""Stopping a Kafka producer in bounded time.

An idempotent aiokafka producer never expires a batch: it retries until the broker takes it, so
that a retry can never write a record twice. ``AIOKafkaProducer.stop()`` first waits for every
batch, so with the broker gone it waits for ever. ``stop_producer`` waits ``timeout`` seconds
for the outstanding batches, fails the rest (their senders hear ``KafkaTimeoutError``; whether
a batch already on the wire was written is unknown, as with any unacknowledged write) and then
closes the producer. A batch that the producer was retrying when it gave up would come back to
be sent again after its back-off; given up, it is no longer pending, and aiokafka's
``reenqueue`` raised ``KeyError`` out of ``stop()`` (an API stopped while its broker was away
ended in "Application shutdown failed"): such a batch is dropped instead.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaTimeoutError

logger = logging.getLogger(__name__)


async def stop_producer(producer: AIOKafkaProducer, timeout: float) -> None:
    """Flush for at most ``timeout`` seconds, give up what is left, close."""
    try:
        await asyncio.wait_for(asyncio.shield(producer.flush()), timeout)
    except TimeoutError:
        logger.warning("the broker did not take the last records within %gs; closing without "
                       "them", timeout)
        accumulator = producer._message_accumulator  # noqa: SLF001 - no public way to give up
        accumulator.fail_all(
            KafkaTimeoutError(f"the producer closed before the broker took this record "
                              f"(waited {timeout:g}s)"))
        reenqueue = accumulator.reenqueue

        def unless_given_up(batch: Any) -> None:
            if not batch.future.done():
                reenqueue(batch)

        accumulator.reenqueue = unless_given_up
    await producer.stop()
