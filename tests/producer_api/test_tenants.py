"""Tenants cannot see each other: tenant bravo tries every way into acme's work and gets
nothing, and acme's results stay what they were (OWASP API1, broken object level
authorization). Another tenant's id is a 404 like an unknown one, never a 403."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from aiokafka import AIOKafkaConsumer
from websockets.asyncio.client import ClientConnection, connect

from schemas.messages import TENANT_HEADER
from tests.producer_api.chromium import Browser, require_chromium
from tests.producer_api.tenants import Keyed, keyed_stack


@pytest.fixture(scope="module")
def keyed(kafka_bootstrap: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Keyed]:
    with keyed_stack(kafka_bootstrap, tmp_path_factory.mktemp("tenants")) as stack:
        yield stack


@pytest.fixture
async def acme(keyed: Keyed) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=keyed.api.base_url, timeout=30,
                                 headers=bearer(keyed.keys["acme"])) as client:
        yield client


@pytest.fixture
async def bravo(keyed: Keyed) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=keyed.api.base_url, timeout=30,
                                 headers=bearer(keyed.keys["bravo"])) as client:
        yield client


def bearer(token: str) -> dict[str, str]:
    return {"authorization": f"Bearer {token}"}


def unique(tag: str) -> str:
    return f"{tag}-{uuid.uuid4().hex[:10]}"


async def computed(client: httpx.AsyncClient, request_id: str, data: list[float]
                   ) -> dict[str, Any]:
    response = await client.post("/v1/calculations", params={"wait": 10},
                                 json={"id": request_id, "op": "sum", "data": data})
    assert response.status_code == 200, response.text
    doc: dict[str, Any] = response.json()
    return doc


async def socket(keyed: Keyed, name: str) -> ClientConnection:
    ws = await connect(keyed.api.ws_url)
    await ws.send(orjson.dumps({"type": "auth", "key": keyed.keys[name]}).decode())
    assert orjson.loads(await ws.recv())["type"] == "authenticated"
    return ws


async def results_until(ws: ClientConnection, last_id: str) -> list[dict[str, Any]]:
    """Every result message up to and including ``last_id``'s."""
    seen: list[dict[str, Any]] = []
    while True:
        msg = orjson.loads(await ws.recv())
        if msg["type"] == "result":
            seen.append(msg)
            if msg["id"] == last_id:
                return seen


async def test_another_tenants_id_is_a_404_like_an_unknown_one(
        acme: httpx.AsyncClient, bravo: httpx.AsyncClient) -> None:
    rid = unique("a")
    await computed(acme, rid, [1.0, 2.0])
    theirs = await bravo.get(f"/v1/calculations/{rid}")
    unknown = await bravo.get(f"/v1/calculations/{unique('never')}")
    assert theirs.status_code == unknown.status_code == 404
    assert theirs.json()["error"]["code"] == unknown.json()["error"]["code"] == "not_found"
    assert (await acme.get(f"/v1/calculations/{rid}")).json()["result"] == 3.0


async def test_reposting_anothers_id_is_a_request_of_ones_own(
        acme: httpx.AsyncClient, bravo: httpx.AsyncClient) -> None:
    rid = unique("shared")
    mine = await computed(acme, rid, [1.0, 2.0])
    # Not a 409 (that would say the id exists) and not acme's result: bravo's own request.
    theirs = await computed(bravo, rid, [10.0, 20.0])
    assert (mine["result"], theirs["result"]) == (3.0, 30.0)
    again = await bravo.post("/v1/calculations", params={"wait": 10},
                             json={"id": rid, "op": "sum", "data": [10.0, 20.0]})
    assert again.status_code == 200 and again.json()["result"] == 30.0  # its own, idempotent
    assert (await acme.get(f"/v1/calculations/{rid}")).json()["result"] == 3.0


async def test_a_batch_naming_anothers_ids_touches_only_ones_own(
        acme: httpx.AsyncClient, bravo: httpx.AsyncClient) -> None:
    ids = [unique("batch") for _ in range(3)]
    answer = await acme.post("/v1/calculations/batch",
                             json=[{"id": i, "op": "sum", "data": [1.0]} for i in ids])
    assert answer.json()["accepted"] == 3
    answer = await bravo.post("/v1/calculations/batch",
                              json=[{"id": i, "op": "sum", "data": [7.0, 7.0]} for i in ids])
    summary = answer.json()
    assert (summary["accepted"], summary["duplicates"], summary["rejected"]) == (3, 0, 0)
    for rid in ids:
        mine = await acme.get(f"/v1/calculations/{rid}")
        assert mine.status_code == 200
        theirs = await bravo.post("/v1/calculations", params={"wait": 10},
                                  json={"id": rid, "op": "sum", "data": [7.0, 7.0]})
        assert theirs.json()["result"] == 14.0
    for rid in ids:
        assert (await computed(acme, rid, [1.0]))["result"] == 1.0


async def test_a_websocket_watch_of_anothers_id_sees_only_ones_own(
        keyed: Keyed, acme: httpx.AsyncClient) -> None:
    theirs = unique("a-only")
    await computed(acme, theirs, [5.0])  # retained: a watch from acme would get it at once
    marker = unique("b-marker")
    ws = await socket(keyed, "bravo")
    try:
        await ws.send(orjson.dumps({"type": "subscribe", "ids": [theirs]}).decode())
        await ws.send(orjson.dumps({"type": "submit", "request": {
            "id": marker, "op": "sum", "data": [1.0]}}).decode())
        seen = await results_until(ws, marker)
        assert [m["id"] for m in seen] == [marker]
    finally:
        await ws.close()


async def test_the_all_stream_carries_only_ones_tenant_but_every_one_for_admin(
        keyed: Keyed, acme: httpx.AsyncClient, bravo: httpx.AsyncClient) -> None:
    b_stream, admin = await socket(keyed, "bravo"), await socket(keyed, "admin")
    try:
        for ws in (b_stream, admin):
            await ws.send(orjson.dumps({"type": "subscribe", "all": True}).decode())
            assert orjson.loads(await ws.recv())["type"] == "subscribed"
        a_live, b_live = unique("a-live"), unique("b-live")
        # acme's result has been filed, and offered to every stream, once its ?wait answers.
        await computed(acme, a_live, [2.0])
        await computed(bravo, b_live, [3.0])
        bravo_saw = [m["id"] for m in await results_until(b_stream, b_live)]
        assert a_live not in bravo_saw and b_live in bravo_saw
        admin_saw = [m["id"] for m in await results_until(admin, b_live)]
        assert a_live in admin_saw
    finally:
        await b_stream.close()
        await admin.close()


async def test_stats_and_the_dashboards_data_need_the_admin_scope(
        keyed: Keyed, bravo: httpx.AsyncClient) -> None:
    for path in ("/v1/stats", "/metrics"):
        assert (await bravo.get(path)).status_code == 403


async def test_the_tenant_travels_on_the_request_and_comes_back_on_its_result(
        keyed: Keyed, acme: httpx.AsyncClient) -> None:
    rid = unique("header")
    await computed(acme, rid, [1.0])
    topics = keyed.deployment.topics
    found: dict[str, list[tuple[str, bytes]]] = {}
    consumer = AIOKafkaConsumer(topics.requests, topics.results,
                                bootstrap_servers=keyed.deployment.bootstrap,
                                auto_offset_reset="earliest", enable_auto_commit=False)
    await consumer.start()
    try:
        async with asyncio.timeout(20):
            async for record in consumer:
                if record.key == rid.encode():
                    found[record.topic] = list(record.headers)
                    if len(found) == 2:
                        break
    finally:
        await consumer.stop()
    for topic in (topics.requests, topics.results):
        assert (TENANT_HEADER, b"acme") in found[topic], (topic, found[topic])


async def test_the_dashboard_asks_for_an_admin_key_and_then_shows_every_tenant(
        keyed: Keyed, acme: httpx.AsyncClient, tmp_path: Path) -> None:
    require_chromium()
    async with Browser(tmp_path / "profile") as page:
        await page.goto(f"{keyed.api.base_url}/dashboard")
        await page.wait_for("document.body.dataset.auth === 'needed'")
        assert await page.evaluate("document.getElementById('key-form').hidden") is False
        key = orjson.dumps(keyed.keys["admin"]).decode()
        await page.evaluate(f"document.getElementById('key-input').value = {key};"
                            "document.getElementById('key-form').requestSubmit(); true")
        await page.wait_for("document.body.dataset.ws === 'open'")
        await page.wait_for("document.body.dataset.stats === 'ok'")
        rid = unique("dash")
        await computed(acme, rid, [4.0])
        newest = "document.querySelector('#recent-results tbody tr')?.innerText"
        assert rid in await page.wait_for(f"{newest}?.includes('{rid}') && {newest}")
        assert keyed.keys["admin"] not in await page.evaluate("location.href")
        assert page.errors == []
