"""Responses written with orjson, and the error envelope."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import orjson
from fastapi import FastAPI
from fastapi.exceptions import RequestValidationError
from starlette.background import BackgroundTask
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.types import Send

from producer_api.errors import ApiError, InvalidRequest, Unavailable


class OrjsonResponse(JSONResponse):
    """``application/json`` rendered by orjson; bytes pass through untouched.

    A ``JSONResponse`` subclass so that FastAPI documents the routes' response models.
    """

    def __init__(
        self, content: Any, status_code: int = 200, headers: Mapping[str, str] | None = None,
        background: BackgroundTask | None = None,
    ) -> None:
        super().__init__(content, status_code, headers, None, background)

    def render(self, content: Any) -> bytes:
        if isinstance(content, bytes):
            return content
        return orjson.dumps(content)


def error_response(exc: ApiError, retry_after: int) -> OrjsonResponse:
    """The JSON answer for an ``ApiError``; 503s carry ``Retry-After``, and errors that leave a
    body unread close the connection."""
    headers = {}
    if isinstance(exc, Unavailable):
        headers["Retry-After"] = str(retry_after)
    if exc.closes:
        headers["Connection"] = "close"
    return OrjsonResponse(exc.body(), exc.status, headers or None)


async def send_raw(send: Send, status: int, body: bytes,
                   headers: list[tuple[bytes, bytes]]) -> None:
    """An answer written straight to ASGI (by the middlewares in front of FastAPI)."""
    headers.append((b"content-length", str(len(body)).encode()))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


async def send_error(send: Send, exc: ApiError, *headers: tuple[bytes, bytes]) -> None:
    """An ``ApiError`` in the JSON envelope, written straight to ASGI, with ``headers``."""
    await send_raw(send, exc.status, exc.body_bytes(),
                   [(b"content-type", b"application/json"), *headers])


def install_handlers(app: FastAPI, retry_after: int) -> None:
    """Answer every error, FastAPI's own included, in the ``{"error": ...}`` envelope."""

    async def api_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, ApiError)
        return error_response(exc, retry_after)

    async def validation_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, RequestValidationError)
        fields = [{"field": ".".join(str(p) for p in err["loc"]), "message": err["msg"]}
                  for err in exc.errors()[:20]] or [{"field": "request", "message": "invalid"}]
        return error_response(InvalidRequest(fields), retry_after)

    async def http_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, StarletteHTTPException)
        code = _HTTP_CODES.get(exc.status_code, "http_error")
        return OrjsonResponse({"error": {"code": code, "message": str(exc.detail)}},
                              exc.status_code, exc.headers)

    app.add_exception_handler(ApiError, api_error)
    app.add_exception_handler(RequestValidationError, validation_error)
    app.add_exception_handler(StarletteHTTPException, http_error)


_HTTP_CODES = {404: "not_found", 405: "method_not_allowed"}
