"""Body limits: 413 as soon as a body passes its limit, chunked bodies included."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
from starlette.requests import Request

from producer_api.limits import read_lines
from tests.producer_api.conftest import ApiStack


async def endless(chunk: bytes, total: int) -> AsyncIterator[bytes]:
    """``total`` bytes of ``chunk`` repeated, sent chunked (no Content-Length)."""
    sent = 0
    while sent < total:
        yield chunk
        sent += len(chunk)


async def test_a_chunked_body_over_the_limit_is_413(
    client: httpx.AsyncClient, api: ApiStack,
) -> None:
    limit = api.settings.max_body_bytes
    body = endless(b'{"op":"sum","data":[' + b"1," * 4000, 100 * limit)
    response = await client.post("/v1/calculations", content=body,
                                 headers={"content-type": "application/json"})
    assert response.status_code == 413
    assert response.json()["error"]["code"] == "payload_too_large"
    assert "content-length" not in response.request.headers
    assert response.request.headers["transfer-encoding"] == "chunked"


async def test_a_declared_length_over_the_limit_is_413_before_reading(
    client: httpx.AsyncClient, api: ApiStack,
) -> None:
    body = b" " * (api.settings.max_body_bytes + 1)
    response = await client.post("/v1/calculations", content=body,
                                 headers={"content-type": "application/json"})
    assert response.status_code == 413


async def test_a_body_at_the_limit_is_read(client: httpx.AsyncClient, api: ApiStack) -> None:
    limit = api.settings.max_body_bytes
    core = b'{"op":"sum","data":[1]}'
    body = core + b" " * (limit - len(core))
    response = await client.post("/v1/calculations", content=body,
                                 headers={"content-type": "application/json"})
    assert response.status_code == 202, response.text


async def test_a_batch_body_over_its_limit_is_413(
    client: httpx.AsyncClient, api: ApiStack,
) -> None:
    body = endless(b"[" + b" " * 65535, api.settings.max_batch_bytes + 65536)
    response = await client.post("/v1/calculations/batch", content=body,
                                 headers={"content-type": "application/json"})
    assert response.status_code == 413


def request_with(chunks: list[bytes]) -> Request:
    """A Starlette request whose body arrives in these chunks."""
    messages = [{"type": "http.request", "body": c, "more_body": True} for c in chunks]
    messages.append({"type": "http.request", "body": b"", "more_body": False})

    async def receive() -> dict[str, object]:
        return messages.pop(0)

    return Request({"type": "http", "method": "POST", "headers": []}, receive)


async def lines(chunks: list[bytes], limit: int) -> list[tuple[int, bytes | None]]:
    return [pair async for pair in read_lines(request_with(chunks), limit, timeout=5.0)]


async def test_lines_are_split_across_chunks_and_over_long_ones_flagged() -> None:
    chunks = [b'ab\ncd', b'e\n\n', b'x' * 5, b'xxxxx', b'x\nlast']
    assert await lines(chunks, 10) == [(0, b"ab"), (1, b"cde"), (3, None), (4, b"last")]
    assert await lines([b"one\r\n", b"  \n", b"two\n"], 10) == [(0, b"one\r"), (2, b"two")]
    assert await lines([b"x" * 11], 10) == [(0, None)]
    assert await lines([], 10) == []
