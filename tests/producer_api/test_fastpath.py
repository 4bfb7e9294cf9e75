"""The ASGI fast path and the FastAPI route answer POST /v1/calculations alike."""

from __future__ import annotations

import asyncio
import io
import uuid
from collections.abc import AsyncIterator
from typing import Any

import httpx
import numpy as np
import pytest

from producer_api.routes import calculations
from producer_api.usecase import state_of
from tests.kafka import Deployment
from tests.producer_api.conftest import ApiStack, api_settings


async def oversize(limit: int) -> AsyncIterator[bytes]:
    for _ in range(limit // 1024 + 2):
        yield b" " * 1024


def cases(limit: int) -> list[tuple[str, dict[str, Any]]]:
    client_id = f"parity-{uuid.uuid4().hex[:8]}"
    return [
        ("plain", {"json": {"op": "sum", "data": [1, 2]}}),
        ("wait", {"json": {"op": "sum", "data": [1, 2]}, "params": {"wait": 5}}),
        ("client id", {"json": {"id": client_id, "op": "max", "data": [1, 2]},
                       "params": {"wait": 5}}),
        ("same again", {"json": {"id": client_id, "op": "max", "data": [1, 2]}}),
        ("conflict", {"json": {"id": client_id, "op": "max", "data": [1, 3]}}),
        ("nan", {"content": b'{"op": "sum", "data": [NaN]}'}),
        ("unknown op", {"json": {"op": "nope", "data": [1]}}),
        ("bad json", {"content": b"{"}),
        ("bad wait", {"json": {"op": "sum", "data": [1]}, "params": {"wait": "x"}}),
        ("negative wait", {"json": {"op": "sum", "data": [1]}, "params": {"wait": "-1"}}),
        ("no content type", {"content": b'{"op": "sum", "data": [1, 2]}'}),
        ("json with charset", {"content": b'{"op": "sum", "data": [1, 2]}',
                               "headers": {"content-type": "Application/JSON; charset=utf-8"}}),
        ("text", {"content": b'{"op": "sum", "data": [1, 2]}',
                  "headers": {"content-type": "text/plain"}}),
        ("form", {"data": {"op": "sum", "data": "1"}}),
        ("multipart", {"files": {"body": b'{"op": "sum", "data": [1, 2]}'}}),
        ("text, bad wait", {"content": b"1", "headers": {"content-type": "text/plain"},
                            "params": {"wait": "x"}}),
        ("text too large", {"content": b" " * (limit + 1),
                            "headers": {"content-type": "text/plain"}}),
        ("declared too large", {"content": b" " * (limit + 1)}),
        ("chunked too large", {"content": oversize(limit)}),
        ("float64", {"content": np.array([1.0, 2.0]).tobytes(), "headers": OCTETS,
                     "params": {"op": "sum", "wait": 5}}),
        ("npy", {"content": npy(np.eye(2)), "headers": {"content-type": "application/x-npy"},
                 "params": {"op": "sum", "wait": 5}}),
        ("float64, 7 bytes", {"content": b"\0" * 7, "headers": OCTETS, "params": {"op": "sum"}}),
        ("float64, no op", {"content": b"\0" * 8, "headers": OCTETS}),
        ("float64, NaN", {"content": np.array([np.nan]).tobytes(), "headers": OCTETS,
                          "params": {"op": "sum"}}),
        ("float64, bad args", {"content": b"\0" * 16, "headers": OCTETS,
                               "params": {"op": "var", "args": "[1]"}}),
        ("float64, bad id", {"content": b"\0" * 8, "headers": OCTETS,
                             "params": {"op": "sum", "id": "a b"}}),
    ]


OCTETS = {"content-type": "application/octet-stream"}


def npy(array: np.ndarray) -> bytes:
    out = io.BytesIO()
    np.save(out, array)
    return out.getvalue()


def shape(response: httpx.Response) -> tuple[int, Any, Any]:
    doc = response.json()
    if "status" not in doc:  # the error envelope
        fields = [f["field"] for f in doc["error"].get("fields", [])]
        return response.status_code, doc["error"]["code"], fields
    return response.status_code, doc["status"], doc.get("result")


async def test_fast_path_and_fastapi_route_agree(api: ApiStack,
                                                 shared_deployment: Deployment) -> None:
    routed = ApiStack(api_settings(shared_deployment, fast_path=False))
    await asyncio.to_thread(routed.start)
    try:
        answers: dict[str, list[tuple[int, Any, Any]]] = {}
        headers: dict[str, list[set[str]]] = {}
        for stack in (api, routed):
            async with httpx.AsyncClient(base_url=stack.base_url, timeout=30) as http:
                for name, request in cases(api.settings.max_body_bytes):
                    response = await http.post("/v1/calculations", **request)
                    answers.setdefault(name, []).append(shape(response))
                    headers.setdefault(name, []).append(
                        {h for h in ("location", "retry-after") if h in response.headers})
        for name, (fast, slow) in answers.items():
            if name in ("client id", "same again", "conflict"):
                # The second stack sees the id the first one published: a re-post.
                assert slow[0] in (200, 409), (name, slow)
                continue
            assert fast == slow, name
            assert headers[name][0] == headers[name][1], name
    finally:
        await asyncio.to_thread(routed.stop)


def state_cases(known: dict[str, str]) -> list[tuple[str, str, dict[str, str]]]:
    """(name, path, headers) of reads of an id's state, ``known`` naming submitted ids."""
    base = "/v1/calculations/"
    return [
        ("ok", base + known["ok"], {}),
        ("ok as .npy", base + known["ok"], {"accept": "application/x-npy"}),
        ("ok as octets", base + known["ok"], {"accept": "application/octet-stream"}),
        ("array", base + known["array"], {}),
        ("array as .npy", base + known["array"], {"accept": "application/x-npy"}),
        ("error result", base + known["error"], {}),
        ("expired", base + known["expired"], {}),
        ("unknown", base + f"never-{uuid.uuid4().hex}", {}),
        ("the batch path", base + "batch", {}),
        ("a space", base + "a%20b", {}),
        ("too long", base + "x" * 129, {}),
        ("trailing slash", base + known["ok"] + "/", {}),
        ("query ignored", base + known["ok"] + "?wait=3", {}),
    ]


async def test_fast_path_and_fastapi_route_read_a_state_alike(
        api: ApiStack, shared_deployment: Deployment, monkeypatch: pytest.MonkeyPatch) -> None:
    async with httpx.AsyncClient(base_url=api.base_url, timeout=30) as http:
        submits = {
            "ok": {"op": "sum", "data": [1, 2]},
            "array": {"op": "matmul", "data": [1, 2, 3, 4, 5, 6, 7, 8],
                      "args": {"m": 2, "k": 2, "n": 2}},
            "error": {"op": "inv", "data": [1, 2, 2, 4]},
            "expired": {"op": "sum", "data": [1], "deadline": 1.0},
        }
        known = {}
        for name, body in submits.items():
            response = await http.post("/v1/calculations", json=body, params={"wait": 10})
            assert response.status_code == 200, (name, response.text)
            known[name] = response.json()["id"]
    routed = ApiStack(api_settings(shared_deployment, fast_path=False))
    await asyncio.to_thread(routed.start)
    try:
        routed_reads = []  # reads of a state that reached the FastAPI route

        async def counted(*args: Any) -> Any:
            routed_reads.append(args[1])
            return await state_of(*args)

        monkeypatch.setattr(calculations, "state_of", counted)
        answers: dict[str, list[tuple[int, str, bytes]]] = {}
        reads = state_cases(known)
        for stack in (api, routed):
            async with httpx.AsyncClient(base_url=stack.base_url, timeout=30) as http:
                for name, path, headers in reads:
                    response = await http.get(path, headers=headers)
                    answers.setdefault(name, []).append(
                        (response.status_code, response.headers.get("content-type", ""),
                         response.content))
            if stack is api:
                assert routed_reads == [], "the fast path left a read of a state to FastAPI"
        assert len(routed_reads) == 10  # every read of a valid id, the slash's redirect aside
        for name, (fast, slow) in answers.items():
            assert fast == slow, name
        statuses = {name: answer[0][0] for name, answer in answers.items()}
        assert statuses == {"ok": 200, "ok as .npy": 200, "ok as octets": 200, "array": 200,
                            "array as .npy": 200, "error result": 200, "expired": 200,
                            "unknown": 404, "the batch path": 404, "a space": 422,
                            "too long": 422, "trailing slash": 307, "query ignored": 200}
    finally:
        await asyncio.to_thread(routed.stop)
