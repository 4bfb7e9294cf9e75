"""POST /v1/calculations/batch: JSON arrays, streamed NDJSON and .npy matrices."""

from __future__ import annotations

import io
import uuid
from collections.abc import AsyncIterator
from typing import Any

import httpx
import numpy as np
import orjson
import pytest

from consumer import ops
from tests.kafka import TopicReader
from tests.producer_api.conftest import ApiStack
from tests.producer_api.helpers import close, example, expected, results_via_ws

NDJSON = {"content-type": "application/x-ndjson"}
NPY = {"content-type": "application/x-npy"}


def npy(array: np.ndarray, **save: Any) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, array, **save)
    return buffer.getvalue()


async def chunked(body: bytes, size: int) -> AsyncIterator[bytes]:
    """The body in ``size``-byte pieces, sent with chunked transfer encoding."""
    for start in range(0, len(body), size):
        yield body[start:start + size]


async def test_json_array_publishes_the_valid_items_and_reports_the_rest(
    client: httpx.AsyncClient, api: ApiStack,
) -> None:
    rng = np.random.default_rng(11)
    bodies = [example(name, rng) for name in sorted(ops.REGISTRY)]
    items: list[Any] = [*bodies, {"op": "nope", "data": [1]}, 7,
                        {"op": "sum", "data": [1], "extra": True}]
    response = await client.post("/v1/calculations/batch", json=items)
    assert response.status_code == 202, response.text
    summary = response.json()
    n = len(bodies)
    assert (summary["accepted"], summary["rejected"], summary["duplicates"]) == (n, 3, 0)
    assert [e["index"] for e in summary["errors"]] == [n, n + 1, n + 2]
    assert [e["field"] for e in summary["errors"]] == ["op", "body", "extra"]
    assert summary["ids"][n:] == [None, None, None]
    results = await results_via_ws(api.ws_url, summary["ids"][:n])
    for request_id, body in zip(summary["ids"], bodies, strict=False):
        assert results[request_id]["status"] == "ok"
        assert close(results[request_id]["result"], expected(body)), body


async def test_json_array_envelope_errors(client: httpx.AsyncClient, api: ApiStack) -> None:
    too_many = [{"op": "sum", "data": [1]}] * (api.settings.max_batch_count + 1)
    for body in (too_many, [], {"op": "sum", "data": [1]}):
        response = await client.post("/v1/calculations/batch", json=body)
        assert response.status_code == 422, response.text
        assert response.json()["error"]["fields"][0]["field"] == "body"
    response = await client.post("/v1/calculations/batch", content=b"[{",
                                 headers={"content-type": "application/json"})
    assert response.status_code == 422


async def test_batch_items_with_client_ids_are_idempotent(client: httpx.AsyncClient) -> None:
    tag = uuid.uuid4().hex[:8]
    items = [{"id": f"b-{tag}-{i}", "op": "sum", "data": [i, 1]} for i in range(5)]
    first = (await client.post("/v1/calculations/batch", json=items)).json()
    assert first["accepted"] == 5 and first["duplicates"] == 0
    changed = [*items[:4], {**items[4], "data": [0, 0]}, {**items[0]}]
    again = (await client.post("/v1/calculations/batch", json=changed)).json()
    assert again["accepted"] == 5 and again["duplicates"] == 5
    assert again["rejected"] == 1 and again["errors"][0]["code"] == "id_conflict"
    assert again["errors"][0]["index"] == 4


async def test_ndjson_stream_is_published_line_by_line(
    client: httpx.AsyncClient, api: ApiStack, shared_deployment: Any,
) -> None:
    rng = np.random.default_rng(5)
    bodies = [{"op": "sum", "data": rng.normal(size=8).tolist()} for _ in range(2_000)]
    lines = [orjson.dumps(b) for b in bodies]
    lines[10] = b'{"op": "sum", "data": [NaN]}'
    lines[20] = b""  # blank lines are skipped, but counted in the index
    lines[30] = b"not json"
    long_line = b'{"op":"sum","data":[' + b"1," * (api.settings.max_body_bytes // 2) + b'1]}'
    lines[40] = long_line
    body = b"\n".join(lines)  # no newline after the last line
    response = await client.post("/v1/calculations/batch", headers=NDJSON,
                                 content=chunked(body, 4093))
    assert response.status_code == 202, response.text
    summary = response.json()
    assert summary["accepted"] == 1_996 and summary["rejected"] == 3
    assert [(e["index"], e["code"]) for e in summary["errors"]] == [
        (10, "invalid_request"), (30, "invalid_request"), (40, "payload_too_large")]
    ids = summary["ids"]
    assert len(ids) == 2_000 and ids[10] is None and ids[20] is None and ids[40] is None
    accepted = {i: ids[i] for i in range(2_000) if ids[i] is not None}
    results = await results_via_ws(api.ws_url, list(accepted.values()))
    for i, request_id in accepted.items():
        assert close(results[request_id]["result"], sum(bodies[i]["data"])), i


async def test_ndjson_can_leave_the_ids_out(client: httpx.AsyncClient) -> None:
    body = b"".join(orjson.dumps({"op": "max", "data": [i, 2]}) + b"\n" for i in range(300))
    response = await client.post("/v1/calculations/batch", params={"ids": "false"},
                                 headers={"content-type": "application/x-ndjson; charset=utf-8"},
                                 content=body)
    assert response.status_code == 202
    assert response.json() == {"accepted": 300, "duplicates": 0, "rejected": 0, "ids": None,
                               "errors": []}


async def test_npy_rows_become_binary_requests(
    client: httpx.AsyncClient, api: ApiStack, shared_deployment: Any,
) -> None:
    matrix = np.random.default_rng(2).normal(size=(300, 16)).astype(np.float32)
    matrix[7, 3] = np.nan
    prefix = f"npy-{uuid.uuid4().hex[:8]}"
    response = await client.post("/v1/calculations/batch",
                                 params={"op": "std", "args": '{"ddof": 1}', "id_prefix": prefix},
                                 headers=NPY, content=npy(matrix))
    assert response.status_code == 202, response.text
    summary = response.json()
    assert summary["id_prefix"] == prefix
    assert summary["accepted"] == 299 and summary["rejected"] == 1
    assert summary["errors"][0]["index"] == 7 and summary["errors"][0]["field"] == "data"
    ids = [i for i in summary["ids"] if i is not None]
    assert ids[:3] == [f"{prefix}-0", f"{prefix}-1", f"{prefix}-2"]
    results = await results_via_ws(api.ws_url, ids)
    want = np.std(matrix.astype(np.float64), axis=1, ddof=1)
    for request_id in ids:
        row = int(request_id.rsplit("-", 1)[1])
        assert close(results[request_id]["result"], want[row]), row
    again = (await client.post("/v1/calculations/batch",
                               params={"op": "std", "args": '{"ddof": 1}', "id_prefix": prefix},
                               headers={"content-type": "application/octet-stream"},
                               content=npy(matrix))).json()
    assert again["duplicates"] == 299
    async with TopicReader(shared_deployment.bootstrap,
                           shared_deployment.topics.requests) as reader:
        records = await reader.read_more(quiet=0.3)
    mine = [r for r in records if r.key.startswith(prefix.encode())]
    assert len(mine) == 299
    assert dict(mine[0].headers)["content-type"] == b"application/vnd.calcstream.request+binary"


async def test_npy_one_dimensional_and_fortran_order(
    client: httpx.AsyncClient, api: ApiStack,
) -> None:
    one = (await client.post("/v1/calculations/batch", params={"op": "sum"}, headers=NPY,
                             content=npy(np.arange(5, dtype=np.int16)))).json()
    assert one["accepted"] == 1
    fortran = np.asfortranarray(np.arange(12.0).reshape(3, 4))
    summary = (await client.post("/v1/calculations/batch", params={"op": "sum"}, headers=NPY,
                                 content=npy(fortran))).json()
    results = await results_via_ws(api.ws_url, [*one["ids"], *summary["ids"]])
    assert results[one["ids"][0]]["result"] == 10.0
    assert [results[i]["result"] for i in summary["ids"]] == [6.0, 22.0, 38.0]


async def test_npy_bodies_that_are_not_numeric_matrices_are_422(
    client: httpx.AsyncClient,
) -> None:
    good = npy(np.ones((2, 3)))
    huge_header = good.replace(b"(2, 3)", b"(200000000, 300000)")
    cases = [
        ({"op": "sum"}, npy(np.array([["a", "b"]]))),
        ({"op": "sum"}, npy(np.ones((2, 2), dtype=complex))),
        ({"op": "sum"}, npy(np.ones((2, 2, 2)))),
        ({"op": "sum"}, npy(np.array([{"x": 1}], dtype=object), allow_pickle=True)),
        ({"op": "sum"}, good[:-8]),
        ({"op": "sum"}, huge_header),
        ({"op": "sum"}, b"not an npy file at all"),
        ({}, good),
        ({"op": "matmul", "args": '{"m": 1, "k": 1, "n": 1}'}, good),
        ({"op": "sum", "args": "[1]"}, good),
        ({"op": "sum", "id_prefix": "bad prefix"}, good),
    ]
    for params, body in cases:
        response = await client.post("/v1/calculations/batch", params=params, headers=NPY,
                                     content=body)
        assert response.status_code == 422, (params, response.text)


@pytest.mark.parametrize("ctype, request_kwargs", [
    ("text/csv", {"content": b"a,b\n1,2", "headers": {"content-type": "text/csv"}}),
    ("text/plain", {"content": b'[{"op": "sum", "data": [1]}]',
                    "headers": {"content-type": "text/plain"}}),
    ("application/x-www-form-urlencoded", {"data": {"op": "sum", "data": "1"}}),
    ("multipart/form-data", {"files": {"body": b'[{"op": "sum", "data": [1]}]'}}),
], ids=["csv", "text", "form", "multipart"])
async def test_unknown_batch_content_type_is_415(
    client: httpx.AsyncClient, ctype: str, request_kwargs: dict[str, Any],
) -> None:
    response = await client.post("/v1/calculations/batch", **request_kwargs)
    assert response.status_code == 415
    error = response.json()["error"]
    assert error["code"] == "unsupported_media_type"
    assert error["message"] == (f"Content-Type {ctype!r}; send application/json, "
                                "application/x-ndjson or application/x-npy")
