"""The client when things break: the broker down, the API down, the API restarting."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import pytest

from calcstream.client import Client, Unavailable
from core.admin import wait_for_broker
from core.kafka import EmbeddedKafka
from core.net import free_port
from producer_api.hub import Hub
from tests.kafka import Deployment
from tests.producer_api.conftest import ApiStack, api_settings, new_deployment
from tests.waiting import until


def on_port(stack: ApiStack, port: int) -> ApiStack:
    """``stack`` serving on ``port`` (to restart an API where its clients expect it)."""
    stack.port = port
    stack.base_url = f"http://127.0.0.1:{port}"
    stack.ws_url = f"ws://127.0.0.1:{port}/v1/ws"
    return stack


@pytest.fixture
async def own_broker() -> AsyncIterator[EmbeddedKafka]:
    """A broker of the test's own, to kill."""
    broker = EmbeddedKafka(free_port())
    await asyncio.to_thread(broker.start)
    try:
        await wait_for_broker(broker.bootstrap_servers)
        yield broker
    finally:
        await asyncio.to_thread(broker.close)


async def test_a_dead_broker_is_unavailable_after_retries_that_honour_retry_after(
    own_broker: EmbeddedKafka,
) -> None:
    dep = await asyncio.to_thread(new_deployment, own_broker.bootstrap_servers)
    stack = ApiStack(api_settings(dep, publish_timeout_s=0.5, retry_after_s=1))
    await asyncio.to_thread(stack.start)
    try:
        async with Client(stack.base_url, retries=1) as client:
            assert await client.submit("sum", [1])
            await asyncio.to_thread(own_broker.kill)
            started = time.monotonic()
            with pytest.raises(Unavailable) as raised:
                await client.submit("sum", [2])
            elapsed = time.monotonic() - started
            assert raised.value.status == 503 and raised.value.retry_after == 1.0
            assert raised.value.code == "broker_unavailable" and raised.value.retriable
            # Two publish timeouts and the Retry-After between them, and not much more.
            assert 0.5 + 1.0 + 0.5 <= elapsed < 6, elapsed
            assert not await client.ready()
    finally:
        await asyncio.to_thread(stack.stop)


async def test_an_api_that_is_not_there_is_one_clear_error() -> None:
    url = f"http://127.0.0.1:{free_port()}"
    async with Client(url, retries=1) as client:
        started = time.monotonic()
        for call in (client.submit("sum", [1]), client.compute("sum", [1]),
                     client.map("sum", [[1]])):
            with pytest.raises(Unavailable, match=f"cannot reach the calcstream API at {url}"):
                await call
        with pytest.raises(Unavailable, match="refused"):
            await client.ready()
        assert time.monotonic() - started < 5


def hub_of(stack: ApiStack) -> Hub:
    """The running API's WebSocket hub (it routes results to subscribed sockets)."""
    assert stack.app is not None
    hub: Hub = stack.app.state.services.hub
    return hub


async def test_waiting_survives_an_api_restart(kafka_bootstrap: str) -> None:
    dep: Deployment = await asyncio.to_thread(new_deployment, kafka_bootstrap)
    first = ApiStack(api_settings(dep))  # no worker yet: the request stays queued
    await asyncio.to_thread(first.start)
    async with Client(first.base_url, retries=6) as client:
        try:
            request_id = await client.submit("dot", [1, 2, 3, 4])
            waiting = asyncio.create_task(client.result(request_id, timeout=30))
            await until(lambda: hub_of(first).watchers(request_id) == 1,
                        what="the first API's subscription")
        finally:
            await asyncio.to_thread(first.stop)
        second = on_port(ApiStack(api_settings(dep), dep.worker_settings()), first.port)
        await asyncio.to_thread(second.start)
        try:
            # The socket reconnects to the new API and subscribes again; the worker computes
            # the request that waited in the topic.
            result = await asyncio.wait_for(waiting, 30)
            assert result.id == request_id and result.result == 11.0
        finally:
            await asyncio.to_thread(second.stop)


async def test_an_api_that_goes_away_fails_the_waiters_instead_of_hanging(
    kafka_bootstrap: str,
) -> None:
    dep = await asyncio.to_thread(new_deployment, kafka_bootstrap)
    stack = ApiStack(api_settings(dep))
    await asyncio.to_thread(stack.start)
    async with Client(stack.base_url, retries=1) as client:
        try:
            waiting = asyncio.create_task(client.result("nobody-computes-this", timeout=60))
            await until(lambda: hub_of(stack).watchers("nobody-computes-this") == 1,
                        what="the subscription")
        finally:
            await asyncio.to_thread(stack.stop)
        started = time.monotonic()
        with pytest.raises(Unavailable, match="results websocket"):
            await asyncio.wait_for(waiting, 10)
        assert time.monotonic() - started < 5
