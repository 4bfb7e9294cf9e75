"""Kafka connections the broker closed are broken connections, on every event loop.

aiokafka tells a dead connection by its reader being at end of file, and a failed write by an
``OSError``. Under uvloop, a connection the broker reset is neither for a moment: its transport
is closed, its reader holds the reset without being at end of file yet, and a write raises
``RuntimeError`` ("the handler is closed"), which aiokafka does not expect
(aio-libs/aiokafka#1038). The task that wrote dies of it. When that task is a client's
metadata refresh, every later refresh waits for it forever: the consumer stops finding its
group coordinator, so it stops heartbeating, committing and (with its batches unable to
commit) fetching, and logs nothing. A worker went silent that way after a broker restart, one
run in about sixty (tests/faults/test_broker_restart.py).

``guard_broken_connections()`` makes a connection whose transport is closing count as not
connected (the client opens a new one) and a request on it fail with ``KafkaConnectionError``,
the retriable error aiokafka's loops already handle, after closing it the way aiokafka closes
a connection whose write failed. It also paces failed metadata refreshes: a producer holding
records for a partition without a leader (its broker shut down, or shutting down) asks for a
refresh, waits for it, and asks again at once. A refresh that cannot reach any broker fails
at once too (connection refused), so the producer spun, two error lines a turn: about 16,000
lines a second from a worker stopped while its broker stopped. Each failed refresh now ends
after the client's ``retry_backoff_ms``.

``stop_consumer()`` stops a consumer whose broker went away: ``consumer.stop()`` then raises a
``CancelledError`` that is not the caller's (below).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

from aiokafka import AIOKafkaClient, AIOKafkaConsumer
from aiokafka.conn import AIOKafkaConnection, CloseReason
from aiokafka.errors import KafkaConnectionError

from core.tasks import being_cancelled

logger = logging.getLogger(__name__)

_GUARDED = "_closing_transport_guarded"


def guard_broken_connections() -> None:
    """Install the guards on aiokafka's connections and clients, once per process (later calls
    do nothing)."""
    if getattr(AIOKafkaConnection, _GUARDED, False):
        return
    connected = AIOKafkaConnection.connected

    def guarded_connected(conn: AIOKafkaConnection) -> bool:
        return bool(connected(conn)) and not _closing(conn)

    AIOKafkaConnection.connected = guarded_connected
    AIOKafkaConnection.send = _refusing_when_closing(AIOKafkaConnection.send)
    AIOKafkaConnection._send_sasl_token = _refusing_when_closing(
        AIOKafkaConnection._send_sasl_token)
    AIOKafkaClient._metadata_update = _paced(AIOKafkaClient._metadata_update)
    setattr(AIOKafkaConnection, _GUARDED, True)


def ended_metadata_task(client: Any) -> asyncio.Task[Any] | None:
    """The metadata task of an aiokafka client (``AIOKafkaClient``) if it has ended, else None.
    The client starts it once and waits on it for every metadata refresh and coordinator
    lookup: once it has ended, the client never recovers, and says nothing."""
    task: asyncio.Task[Any] | None = getattr(client, "_sync_task", None)
    return task if task is not None and task.done() else None


async def stop_consumer(consumer: AIOKafkaConsumer) -> None:
    """``consumer.stop()``, surviving an aiokafka 0.14 quirk.

    When a fetch is in its retry back-off (the broker went away), ``Fetcher.close`` cancels it
    and awaits it without catching the ``CancelledError``, which escapes ``stop()`` before the
    client's connections are closed. That error is not a cancellation of this task: finish
    closing instead of failing the whole shutdown.
    """
    try:
        await consumer.stop()
    except asyncio.CancelledError:
        if being_cancelled():
            raise
        logger.debug("aiokafka let a cancelled fetch escape stop(); closing its client")
        await consumer._client.close()  # noqa: SLF001 - stop() skipped it, see above


def _paced(update: Callable[..., Any]) -> Callable[..., Any]:
    async def paced(client: AIOKafkaClient, *args: Any, **kwargs: Any) -> Any:
        updated = await update(client, *args, **kwargs)
        if not updated:
            await asyncio.sleep(client._retry_backoff)  # noqa: SLF001 - the client's own setting
        return updated

    return paced


def _refusing_when_closing(write: Callable[..., Any]) -> Callable[..., Any]:
    def guarded(conn: AIOKafkaConnection, *args: Any, **kwargs: Any) -> Any:
        if _closing(conn):
            conn.close(reason=CloseReason.CONNECTION_BROKEN)
            raise KafkaConnectionError(
                f"Connection at {conn.host}:{conn.port} broken: closed by the other end")
        return write(conn, *args, **kwargs)

    return guarded


def _closing(conn: AIOKafkaConnection) -> bool:
    writer = conn._writer
    return writer is not None and writer.transport.is_closing()
