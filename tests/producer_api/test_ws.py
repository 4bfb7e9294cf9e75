"""WS /v1/ws: subscriptions, submits, bad messages, limits and slow readers."""

from __future__ import annotations

import asyncio
import io
import socket
import time
import uuid
from typing import Any

import httpx
import numpy as np
import orjson
import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from schemas.messages import CalcResult
from tests.producer_api.conftest import ApiStack
from tests.producer_api.helpers import submit_and_wait


async def send(ws: ClientConnection, doc: Any) -> None:
    await ws.send(orjson.dumps(doc).decode())


async def receive(ws: ClientConnection, timeout: float = 10.0) -> dict[str, Any]:
    doc: dict[str, Any] = orjson.loads(await asyncio.wait_for(ws.recv(), timeout))
    return doc


async def receive_result(ws: ClientConnection, request_id: str,
                         timeout: float = 10.0) -> dict[str, Any]:
    """The result message for ``request_id``, skipping other results."""
    async with asyncio.timeout(timeout):
        while True:
            msg = await receive(ws, timeout)
            if msg["type"] == "result" and msg["id"] == request_id:
                return msg


def as_result(msg: dict[str, Any]) -> CalcResult:
    """A result message is a CalcResult plus its type."""
    return CalcResult.model_validate({k: v for k, v in msg.items() if k != "type"})


def unique(tag: str) -> str:
    return f"{tag}-{uuid.uuid4().hex[:10]}"


async def test_subscribe_by_id_then_submit(api: ApiStack, client: httpx.AsyncClient) -> None:
    request_id = unique("ws-id")
    async with connect(api.ws_url) as ws:
        await send(ws, {"type": "subscribe", "ids": [request_id], "ref": "r1"})
        assert await receive(ws) == {"type": "subscribed", "ids": [request_id], "ref": "r1"}
        response = await client.post("/v1/calculations",
                                     json={"id": request_id, "op": "l2_norm", "data": [3, 4]})
        assert response.status_code == 202
        result = as_result(await receive_result(ws, request_id))
        assert result.status == "ok" and result.result == 5.0


async def test_a_result_that_arrived_before_the_subscription_is_delivered(
    api: ApiStack, client: httpx.AsyncClient,
) -> None:
    done = await submit_and_wait(client, {"op": "min", "data": [4, -2, 9]})
    async with connect(api.ws_url) as ws:
        await send(ws, {"type": "subscribe", "ids": [done["id"], unique("pending")]})
        assert (await receive(ws))["type"] == "subscribed"
        msg = await receive(ws)
        assert msg["type"] == "result" and msg["id"] == done["id"] and msg["result"] == -2.0


async def test_subscribe_all_receives_every_new_result(
    api: ApiStack, client: httpx.AsyncClient,
) -> None:
    async with connect(api.ws_url) as ws:
        await send(ws, {"type": "subscribe", "all": True})
        assert await receive(ws) == {"type": "subscribed", "all": True}
        ids = [(await client.post("/v1/calculations", json={"op": "sum", "data": [i]}))
               .json()["id"] for i in range(5)]
        seen: dict[str, float] = {}
        async with asyncio.timeout(10):
            while set(ids) - seen.keys():
                msg = await receive(ws)
                if msg["type"] == "result":
                    seen[msg["id"]] = msg["result"]
        assert [seen[i] for i in ids] == [0.0, 1.0, 2.0, 3.0, 4.0]
        await send(ws, {"type": "unsubscribe", "all": True})
        assert await receive(ws) == {"type": "unsubscribed", "all": True}
        await submit_and_wait(client, {"op": "sum", "data": [99]})
        with pytest.raises(TimeoutError):
            await receive(ws, timeout=0.3)  # nothing more comes after unsubscribing


async def test_submit_over_the_socket(api: ApiStack) -> None:
    async with connect(api.ws_url) as ws:
        await send(ws, {"type": "submit", "ref": 1,
                        "request": {"op": "dot", "data": [1, 2, 3, 4]}})
        accepted = await receive(ws)
        assert accepted["type"] == "accepted" and accepted["ref"] == 1
        result = await receive(ws)
        assert result["type"] == "result" and result["id"] == accepted["id"]
        assert result["result"] == 11.0
        client_id = unique("ws-submit")
        for _ in range(2):  # the second submit of the same id is a no-op, answered the same
            await send(ws, {"type": "submit",
                            "request": {"id": client_id, "op": "max", "data": [1, 7]}})
            assert await receive(ws) == {"type": "accepted", "id": client_id}
            assert (await receive_result(ws, client_id))["result"] == 7.0
        await send(ws, {"type": "submit",
                        "request": {"id": client_id, "op": "max", "data": [1, 8]}})
        assert (await receive(ws))["error"]["code"] == "id_conflict"


async def test_a_client_that_offers_compression_gets_none(api: ApiStack) -> None:
    async with connect(api.ws_url, compression="deflate") as ws:
        assert ws.response is not None
        assert ws.response.headers.get("Sec-WebSocket-Extensions") is None
        await send(ws, {"type": "subscribe", "ids": ["x"]})
        assert (await receive(ws))["type"] == "subscribed"


async def test_a_large_submit_over_the_socket_is_read_and_answered_whole(api: ApiStack) -> None:
    # Past floatjson.SMALLEST, a plain request's data is read straight into float64; one that
    # is not plain (a value that is not a number) takes the full parse and its error.
    values = np.random.default_rng(9).standard_normal(2_000)
    async with connect(api.ws_url) as ws:
        await ws.send((b'{"type": "submit", "ref": "big", "request": '
                       + orjson.dumps({"op": "sum", "data": values},
                                      option=orjson.OPT_SERIALIZE_NUMPY) + b"}").decode())
        accepted = await receive(ws)
        assert accepted["type"] == "accepted" and accepted["ref"] == "big", accepted
        result = await receive_result(ws, accepted["id"])
        assert result["result"] == pytest.approx(float(values.sum()), rel=1e-12)
        await send(ws, {"type": "submit", "ref": "bad",
                        "request": {"op": "sum", "data": [*values[:-1].tolist(), "x"]}})
        error = await receive(ws)
        assert error["ref"] == "bad" and error["error"]["fields"][0]["field"] == "data.1999"


@pytest.mark.parametrize(("message", "field"), [
    ("not json", "message"),
    ("[1, 2]", "message"),
    ('{"type": "shout"}', "type"),
    ('{"type": "subscribe"}', "ids"),
    ('{"type": "subscribe", "ids": ["ok", "not ok"]}', "ids"),
    ('{"type": "unsubscribe", "ids": "x"}', "ids"),
    ('{"type": "submit"}', "request"),
    ('{"type": "submit", "request": {"op": "sum", "data": [NaN]}}', "message"),
    ('{"type": "submit", "request": {"op": "sum", "data": ["Infinity"]}}', "data.0"),
    ('{"type": "submit", "request": {"op": "inv", "data": [1, 2, 3]}}', "data"),
    ('{"type": "submit", "request": {"op": "nope", "data": [1]}}', "op"),
])
async def test_bad_messages_get_an_error_and_the_socket_stays_up(
    api: ApiStack, message: str, field: str,
) -> None:
    async with connect(api.ws_url) as ws:
        await ws.send(message)
        reply = await receive(ws)
        assert reply["type"] == "error", reply
        assert reply["error"]["fields"][0]["field"] == field, reply
        await send(ws, {"type": "subscribe", "ids": ["still-here"]})
        assert (await receive(ws))["type"] == "subscribed"


async def test_a_message_over_the_limit_closes_with_1009(api: ApiStack) -> None:
    async with connect(api.ws_url, max_size=None) as ws:
        await ws.send("x" * (api.settings.ws_max_message_bytes + 1))
        with pytest.raises(ConnectionClosed) as closed:
            await receive(ws)
        assert closed.value.rcvd is not None and closed.value.rcvd.code == 1009


async def test_a_slow_reader_drops_its_oldest_results_and_never_slows_others(
    api: ApiStack, client: httpx.AsyncClient,
) -> None:
    rows = 150  # each result is a 100×100 matrix, ~200 kB of JSON: ~30 MB in all
    prefix = unique("slow")
    mine = {f"{prefix}-{i}" for i in range(rows)}
    # A reader that really does not read: a tiny kernel buffer and a one-frame client queue.
    slow_sock = socket.socket()
    slow_sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    slow_sock.connect(("127.0.0.1", api.port))
    async with connect(api.ws_url, sock=slow_sock, max_queue=1, max_size=None) as slow, \
            connect(api.ws_url, max_size=None) as fast:
        for ws in (slow, fast):
            await send(ws, {"type": "subscribe", "all": True})
            assert (await receive(ws))["type"] == "subscribed"
        buffer = io.BytesIO()
        np.save(buffer, np.random.default_rng(1).normal(size=(rows, 200)))
        started = time.monotonic()
        response = await client.post(
            "/v1/calculations/batch", content=buffer.getvalue(),
            params={"op": "matmul", "args": '{"m": 100, "k": 1, "n": 100}', "id_prefix": prefix},
            headers={"content-type": "application/x-npy"})
        assert response.json()["accepted"] == rows
        fast_seen: set[str] = set()
        async with asyncio.timeout(30):
            while fast_seen != mine:
                msg = await receive(fast)
                assert msg["type"] != "dropped"
                if msg["type"] == "result" and msg["id"] in mine:
                    assert len(msg["result"]) == 100
                    fast_seen.add(msg["id"])
        fast_elapsed = time.monotonic() - started

        slow_seen: set[str] = set()
        dropped = 0
        async with asyncio.timeout(30):
            while len(slow_seen) + dropped < rows:
                msg = await receive(slow)
                if msg["type"] == "dropped":
                    dropped += msg["count"]
                elif msg["type"] == "result" and msg["id"] in mine:
                    slow_seen.add(msg["id"])
    assert dropped > 0, "the slow reader should have lost its oldest results"
    assert len(slow_seen) >= api.settings.ws_queue_size
    assert fast_elapsed < 20
