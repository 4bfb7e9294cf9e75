"""A Kafka connection whose transport closed counts as broken, on asyncio and on uvloop, and a
metadata refresh that reaches no broker fails at the client's back-off pace (core.connections),
against the real broker."""

from __future__ import annotations

import asyncio
import socket
import struct
from collections.abc import Callable

import pytest
import uvloop
from aiokafka import AIOKafkaClient
from aiokafka.conn import create_conn
from aiokafka.errors import KafkaConnectionError
from aiokafka.protocol.metadata import MetadataRequest

from core.connections import guard_broken_connections
from core.kafka import EmbeddedKafka
from core.net import free_port

LOOPS: dict[str, Callable[[], asyncio.AbstractEventLoop]] = {
    "asyncio": asyncio.new_event_loop, "uvloop": uvloop.new_event_loop}


def run_on(loop: str, coro: object) -> None:
    with asyncio.Runner(loop_factory=LOOPS[loop]) as runner:
        runner.run(coro)  # type: ignore[arg-type]


class ResettingProxy:
    """Relays TCP to the broker until ``reset()``, which ends each client's connection with a
    reset (RST), as a broker's host does for a process that was killed."""

    def __init__(self, upstream: str) -> None:
        self.host, port = upstream.rsplit(":", 1)
        self.upstream_port = int(port)
        self.port = 0
        self._clients: list[asyncio.StreamWriter] = []
        self._server: asyncio.Server | None = None
        self._pipes: set[asyncio.Task[None]] = set()

    async def __aenter__(self) -> ResettingProxy:
        self._server = await asyncio.start_server(self._relay, self.host, 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._server is not None
        self._server.close()
        for pipe in self._pipes:
            pipe.cancel()
        await asyncio.gather(*self._pipes, return_exceptions=True)

    def reset(self) -> None:
        for writer in self._clients:
            writer.get_extra_info("socket").setsockopt(
                socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            writer.transport.abort()

    async def _relay(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection(self.host, self.upstream_port)
        self._clients.append(writer)
        for source, sink in ((reader, up_writer), (up_reader, writer)):
            pipe = asyncio.create_task(self._pipe(source, sink))
            self._pipes.add(pipe)

    @staticmethod
    async def _pipe(source: asyncio.StreamReader, sink: asyncio.StreamWriter) -> None:
        try:
            while data := await source.read(65536):
                sink.write(data)
        except OSError:
            pass
        finally:
            sink.transport.abort()


def closed(transport: asyncio.BaseTransport) -> bool:
    """Closed by the reset: uvloop's transport says "closed=True" once its handle is gone
    (writes raise from then on); asyncio's is closing at once (writes are dropped)."""
    if type(transport).__module__.startswith("uvloop"):
        return "closed=True" in repr(transport)
    return transport.is_closing()


@pytest.mark.parametrize("loop", sorted(LOOPS))
def test_a_request_on_a_connection_the_broker_reset_is_a_connection_error(
        kafka_bootstrap: str, loop: str) -> None:
    """The moment after a reset arrives: the transport is closed and the reader has not heard
    yet. Under uvloop a write there raised RuntimeError, which killed the aiokafka task that
    made it (a client's metadata refresh: then every later refresh hung)."""
    guard_broken_connections()

    async def scenario() -> None:
        async with ResettingProxy(kafka_bootstrap) as proxy:
            conn = await create_conn(proxy.host, proxy.port)
            assert (await conn.send(MetadataRequest([]))).brokers
            proxy.reset()
            async with asyncio.timeout(10):
                # One loop turn at a time: the state lasts only a few turns.
                while conn._writer is not None and not closed(conn._writer.transport):  # noqa: ASYNC110
                    await asyncio.sleep(0)
            assert conn._writer is not None, "aiokafka saw it already: nothing tested"
            assert not conn.connected()
            with pytest.raises(KafkaConnectionError):
                await conn.send(MetadataRequest([]))
            assert conn._writer is None  # closed, as aiokafka closes one whose write failed

    run_on(loop, scenario())


def test_installing_twice_wraps_once() -> None:
    from aiokafka.conn import AIOKafkaConnection

    guard_broken_connections()
    send = AIOKafkaConnection.send
    guard_broken_connections()
    assert AIOKafkaConnection.send is send


async def test_metadata_refreshes_that_reach_no_broker_are_paced() -> None:
    # A producer with records for a leaderless partition asks for a refresh after each failed
    # one; refused at once, it spun (two error lines a turn, ~16,000 lines a second).
    guard_broken_connections()
    broker = EmbeddedKafka(free_port())
    await asyncio.to_thread(broker.start)
    client = AIOKafkaClient(bootstrap_servers=broker.bootstrap_servers, retry_backoff_ms=100)
    try:
        await client.bootstrap()
        await asyncio.to_thread(broker.kill)
        started = asyncio.get_running_loop().time()
        for _ in range(5):
            assert await client.force_metadata_update() is False
        assert asyncio.get_running_loop().time() - started >= 5 * 0.1
    finally:
        await client.close()
        await asyncio.to_thread(broker.close)
