"""GET /v1/asyncapi.json and /v1/limits, over HTTP from a real server."""

from __future__ import annotations

import asyncio
import contextlib
import json
import threading
from collections.abc import Iterator
from pathlib import Path

import httpx
import uvicorn

from core.net import free_port
from producer_api.__main__ import config
from producer_api.settings import ApiSettings
from schemas.asyncapi import build
from schemas.topics import Topics
from tests.producer_api.conftest import ApiStack

COMMITTED = Path(__file__).parents[2] / "schemas" / "asyncapi.json"


@contextlib.contextmanager
def serving_without_a_broker(settings: ApiSettings) -> Iterator[str]:
    """The real app under uvicorn with its lifespan off: what needs only settings answers."""
    port = free_port()
    server = uvicorn.Server(config(settings, "127.0.0.1", port, lifespan="off"))
    thread = threading.Thread(target=asyncio.run, args=(server.serve(),), daemon=True)
    thread.start()
    try:
        for _ in range(500):
            if server.started:
                break
            threading.Event().wait(0.01)
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(10)


def test_with_the_default_topics_it_is_the_committed_document() -> None:
    defaults = Topics()
    settings = ApiSettings(requests_topic=defaults.requests, results_topic=defaults.results,
                           dlq_topic=defaults.dlq)
    with serving_without_a_broker(settings) as url:
        response = httpx.get(f"{url}/v1/asyncapi.json")
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    assert response.json() == json.loads(COMMITTED.read_text())


async def test_a_deployment_gets_its_own_topic_names(api: ApiStack,
                                                     client: httpx.AsyncClient) -> None:
    doc = (await client.get("/v1/asyncapi.json")).json()
    assert doc == build(api.settings.topics)
    addresses = {channel["address"] for channel in doc["channels"].values()}
    assert addresses == set(api.settings.topics.all())


async def test_limits_are_the_settings(api: ApiStack, client: httpx.AsyncClient) -> None:
    limits = (await client.get("/v1/limits")).json()
    assert limits == {name: getattr(api.settings, name) for name in limits}
    assert limits["max_batch_count"] == api.settings.max_batch_count
