"""Helpers shared by the API tests: example requests, waiting for results, counting passes of
the event loop."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import numpy as np
import orjson
from websockets.asyncio.client import connect

from consumer import ops


def example(op: str, rng: np.random.Generator) -> dict[str, Any]:
    """A valid request body for ``op``."""
    if op == "dot":
        return {"op": op, "data": rng.normal(size=2 * int(rng.integers(1, 20))).tolist()}
    if op == "matmul":
        m, k, n = (int(v) for v in rng.integers(1, 5, size=3))
        return {"op": op, "data": rng.normal(size=m * k + k * n).tolist(),
                "args": {"m": m, "k": k, "n": n}}
    if op == "inv":
        n = int(rng.integers(1, 5))
        return {"op": op, "data": (rng.normal(size=(n, n)) + n * np.eye(n)).ravel().tolist()}
    if op in ("var", "std"):
        return {"op": op, "data": rng.normal(size=int(rng.integers(3, 40))).tolist(),
                "args": {"ddof": int(rng.integers(0, 2))}}
    return {"op": op, "data": rng.normal(size=int(rng.integers(1, 40))).tolist()}


def expected(body: dict[str, Any]) -> Any:
    """The reference answer for a request body."""
    op = ops.get(body["op"])
    data = np.asarray(body["data"], dtype=float)
    return op.reference(data, op.parse(data.size, body.get("args", {})))


def close(got: Any, want: Any) -> bool:
    """Numerically equal (results travel as JSON)."""
    return bool(np.allclose(np.asarray(got, dtype=float), np.asarray(want, dtype=float),
                            rtol=1e-9, atol=1e-9))


async def results_via_ws(ws_url: str, ids: list[str], timeout: float = 30.0
                         ) -> dict[str, dict[str, Any]]:
    """Every id's result, by subscribing over the WebSocket (retained ones come at once)."""
    wanted = set(ids)
    got: dict[str, dict[str, Any]] = {}
    async with connect(ws_url, max_size=None) as ws:
        for start in range(0, len(ids), 1000):
            await ws.send(orjson.dumps({"type": "subscribe", "ids": ids[start:start + 1000]})
                          .decode())
        async with asyncio.timeout(timeout):
            while wanted - got.keys():
                msg = orjson.loads(await ws.recv())
                if msg["type"] == "result" and msg["id"] in wanted:
                    got[msg["id"]] = msg
                assert msg["type"] in ("result", "subscribed"), msg
    return got


async def submit_and_wait(client: httpx.AsyncClient, body: dict[str, Any],
                          wait: float = 10.0) -> dict[str, Any]:
    """POST with ?wait= and return the result document (fails on anything but 200)."""
    response = await client.post("/v1/calculations", params={"wait": wait}, json=body)
    assert response.status_code == 200, response.text
    doc: dict[str, Any] = response.json()
    return doc


class Passes:
    """Counts passes of the event loop: a callback that schedules itself runs once per pass."""

    def __init__(self) -> None:
        self.count = 0
        self.loop = asyncio.get_running_loop()
        self.loop.call_soon(self._tick)

    def _tick(self) -> None:
        self.count += 1
        self.loop.call_soon(self._tick)
