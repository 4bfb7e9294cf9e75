"""What every peer shares: parse a request body, compute, answer."""

from __future__ import annotations

from typing import Any

import numpy as np
import orjson
from fastapi import FastAPI, Response

JSON = "application/json"


def parse(body: bytes) -> tuple[str, Any, dict[str, Any]]:
    """``{"op", "data", "args"?}`` → (op, data as a list, args)."""
    doc = orjson.loads(body)
    return doc["op"], doc["data"], doc.get("args") or {}


def compute(op: str, data: Any, args: dict[str, Any]) -> Any:
    """The two bench ops, as calcstream defines them: a float, or a nested list."""
    x = np.asarray(data, dtype=np.float64)
    if op == "sum_of_squares":
        return float(np.dot(x, x))
    if op == "matmul":
        m, k, n = args["m"], args["k"], args["n"]
        product = x[: m * k].reshape(m, k) @ x[m * k :].reshape(k, n)
        return product
    raise ValueError(f"unknown op {op!r}")


def result_response(value: Any, status: int = 200) -> Response:
    """``{"status": "ok", "result": value}`` as JSON (NumPy arrays serialised natively)."""
    body = orjson.dumps({"status": "ok", "result": value}, option=orjson.OPT_SERIALIZE_NUMPY)
    return Response(body, status, media_type=JSON)


def new_app(title: str) -> FastAPI:
    """A FastAPI app with ``GET /healthz``."""
    app = FastAPI(title=title, docs_url=None, redoc_url=None, openapi_url=None)

    @app.get("/healthz")
    async def healthz() -> Response:
        return Response(b'{"status":"ok"}', media_type=JSON)

    return app
