"""Stopping a Kafka producer in bounded time.

An idempotent aiokafka producer never expires a batch: it retries until the broker takes it, so
that a retry can never write a record twice. ``AIOKafkaProducer.stop()`` first waits for every
batch, so with the broker gone it waits for ever. ``stop_producer`` waits ``timeout`` seconds
for the outstanding batches, fails the rest (their senders hear ``KafkaTimeoutError``; whether
a batch already on the wire was written is unknown, as with any unacknowledged write) and then
closes the producer.
"""

from __future__ import annotations

import asyncio
import logging

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
        producer._message_accumulator.fail_all(  # noqa: SLF001 - no public way to give up
            KafkaTimeoutError(f"the producer closed before the broker took this record "
                              f"(waited {timeout:g}s)"))
    await producer.stop()
