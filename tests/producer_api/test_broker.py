"""The API and its broker: 503 when it is gone, recovery after a restart, start-up failure."""

from __future__ import annotations

import asyncio
import time

import httpx
import pytest

from core.admin import BrokerUnavailable
from core.kafka import EmbeddedKafka
from core.net import free_port
from producer_api.main import create_app
from producer_api.settings import ApiSettings
from tests.producer_api.conftest import ApiStack, api_settings, new_deployment
from tests.producer_api.helpers import submit_and_wait
from tests.waiting import until


async def test_broker_down_is_503_with_retry_after_within_the_publish_timeout() -> None:
    broker = EmbeddedKafka(free_port())
    await asyncio.to_thread(broker.start)
    try:
        dep = await asyncio.to_thread(new_deployment, broker.bootstrap_servers)
        stack = ApiStack(api_settings(dep, publish_timeout_s=1.0, retry_after_s=3))
        await asyncio.to_thread(stack.start)
        try:
            async with httpx.AsyncClient(base_url=stack.base_url, timeout=30) as http:
                before = await http.post("/v1/calculations", json={"op": "sum", "data": [1]})
                assert before.status_code == 202
                await asyncio.to_thread(broker.kill)

                started = time.monotonic()
                response = await http.post("/v1/calculations", json={"op": "sum", "data": [1]})
                assert response.status_code == 503, response.text
                assert time.monotonic() - started < 1.0 + 3.0  # bounded: the timeout plus slack
                assert response.headers["retry-after"] == "3"
                assert response.json()["error"]["code"] == "broker_unavailable"

                batch = await http.post("/v1/calculations/batch",
                                        json=[{"op": "sum", "data": [i]} for i in range(5)])
                assert batch.status_code == 503
                assert batch.json()["summary"]["accepted"] == 0

                # The id of a refused request was not remembered: re-posting it is fine later.
                refused = await http.post("/v1/calculations", json={
                    "id": "refused-1", "op": "sum", "data": [1]})
                assert refused.status_code == 503
                assert (await http.get("/v1/calculations/refused-1")).status_code == 404

                ready = await http.get("/readyz")
                assert ready.status_code == 503 and ready.json()["broker"] is False
                # What was accepted before is still answered.
                state = await http.get(before.headers["location"])
                assert state.status_code == 200 and state.json()["status"] == "queued"
        finally:
            await asyncio.to_thread(stack.stop)
    finally:
        await asyncio.to_thread(broker.close)


async def test_a_restarted_api_remembers_recent_results(kafka_bootstrap: str) -> None:
    dep = await asyncio.to_thread(new_deployment, kafka_bootstrap)
    first = ApiStack(api_settings(dep), dep.worker_settings())
    await asyncio.to_thread(first.start)
    try:
        async with httpx.AsyncClient(base_url=first.base_url, timeout=30) as http:
            done = await submit_and_wait(http, {"id": "before-restart", "op": "sum",
                                                "data": [2, 3]})
    finally:
        await asyncio.to_thread(first.stop)
    assert done["result"] == 5.0

    second = ApiStack(api_settings(dep))
    await asyncio.to_thread(second.start)  # returns once the reader caught up
    try:
        async with httpx.AsyncClient(base_url=second.base_url, timeout=30) as http:
            state = await http.get("/v1/calculations/before-restart")
            assert state.status_code == 200 and state.json() == done
            # Without the fingerprint, a re-post is compared by op: same op is the same request.
            same = await http.post("/v1/calculations", json={"id": "before-restart",
                                                             "op": "sum", "data": [2, 3]})
            assert same.status_code == 200 and same.json() == done
            other = await http.post("/v1/calculations", json={"id": "before-restart",
                                                              "op": "max", "data": [2, 3]})
            assert other.status_code == 409
    finally:
        await asyncio.to_thread(second.stop)


async def test_start_up_fails_clearly_when_no_broker_answers() -> None:
    app = create_app(ApiSettings(bootstrap_servers=f"127.0.0.1:{free_port()}",
                                 startup_timeout_s=0.5))
    with pytest.raises(BrokerUnavailable):
        async with app.router.lifespan_context(app):
            pass


async def test_requests_before_start_up_are_503() -> None:
    app = create_app(ApiSettings())
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://api") as http:
        response = await http.post("/v1/calculations", json={"op": "sum", "data": [1]})
    assert response.status_code == 503
    assert response.json()["error"]["code"] == "not_started"



async def test_an_api_whose_kafka_client_stopped_refreshing_is_not_ready(
        kafka_bootstrap: str) -> None:
    """A client whose metadata task ended never finds its broker or coordinator again (aiokafka
    waits on that task): /readyz says so, for a balancer to take the replica out."""
    dep = await asyncio.to_thread(new_deployment, kafka_bootstrap)
    stack = ApiStack(api_settings(dep))
    await asyncio.to_thread(stack.start)
    try:
        async with httpx.AsyncClient(base_url=stack.base_url, timeout=30) as http:
            assert (await http.get("/readyz")).status_code == 200
            services = stack.app.state.services  # type: ignore[union-attr]
            reader_feed = services.reader._share.consumer._client._sync_task
            stack._loop.call_soon_threadsafe(reader_feed.cancel)  # type: ignore[union-attr]
            await until(reader_feed.done, what="the reader's metadata task ending")
            ready = await http.get("/readyz")
            assert ready.status_code == 503
            assert ready.json()["results_caught_up"] is False and ready.json()["broker"] is True

            producer_task = services.publisher._require().client._sync_task
            stack._loop.call_soon_threadsafe(producer_task.cancel)  # type: ignore[union-attr]
            await until(producer_task.done, what="the producer's metadata task ending")
            assert (await http.get("/readyz")).json()["broker"] is False
    finally:
        await asyncio.to_thread(stack.stop)
