"""The hot paths: ``POST /v1/calculations`` and ``GET /v1/calculations/{id}`` served straight
from ASGI.

FastAPI's request machinery (middleware layers, routing, dependency solving, query validation)
costs more CPU per request than validating and publishing one, and several times what reading
an id's state costs (bench/FINDINGS.md 38). This middleware answers the endpoints that must
sustain thousands of requests per second itself, with the functions the FastAPI routes use
(``usecase.submit_one``, ``usecase.state_of``), the same limits and the same error envelope;
every other request, a ``GET`` of an id the route would refuse (its 422 is FastAPI's), and
these ones when ``fast_path`` is off, go through FastAPI. The FastAPI routes stay the
documented contract (OpenAPI) and the reference behaviour.
"""

from __future__ import annotations

import asyncio
import logging
import math
from urllib.parse import parse_qsl

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from producer_api.auth import principal_in
from producer_api.deps import Services
from producer_api.errors import (
    ApiError,
    BodyTimeout,
    ClientDisconnected,
    InvalidRequest,
    NotStartedError,
    PayloadTooLarge,
)
from producer_api.rendering import wanted
from producer_api.responses import send_raw
from producer_api.stats import ApiStats
from producer_api.tracing import carried
from producer_api.usecase import require_submit_type, state_of, submit_one
from schemas.messages import is_request_id

logger = logging.getLogger(__name__)

PATH = "/v1/calculations"
STATE_PATH = PATH + "/"
"""``GET`` of this followed by an id: the id's state."""
_JSON = (b"content-type", b"application/json")


class FastPath:
    """ASGI middleware that serves a submit and a read of an id's state without the framework."""

    def __init__(self, app: ASGIApp, state: object, retry_after: int) -> None:
        self.app = app
        self.state = state
        self.retry_after = str(retry_after).encode()
        stats: ApiStats | None = getattr(state, "stats", None)
        self.intake = (stats or ApiStats()).single

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            path, method = scope["path"], scope["method"]
            if method == "POST" and path == PATH:
                await self._submit(scope, receive, send)
                return
            if (method == "GET" and path.startswith(STATE_PATH)
                    and is_request_id(request_id := path[len(STATE_PATH):])):
                await self._state(scope, send, request_id)
                return
        await self.app(scope, receive, send)

    async def _submit(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            services = self._services()
            principal = principal_in(scope, services.keys)
            query = _query(scope["query_string"])
            wait = _wait(query)
            ctype = require_submit_type(_header(scope, b"content-type"))
            body = await _read(scope, receive, services.settings.max_body_bytes,
                               services.settings.body_timeout_s)
            answer = await submit_one(services, body, wait, principal.tenant, ctype, query,
                                      carried(scope["headers"]), wanted(_header(scope, b"accept")),
                                      _header(scope, b"authorization"))
        except ApiError as exc:
            self.intake.reject(exc)
            await send_raw(send, exc.status, exc.body_bytes(), self._error_headers(exc))
            return
        await send_raw(send, answer.status, answer.body, answer.headers)

    async def _state(self, scope: Scope, send: Send, request_id: str) -> None:
        try:
            services = self._services()
            principal = principal_in(scope, services.keys)
            answer = await state_of(services, request_id, principal.tenant, _headers(scope))
        except ApiError as exc:
            await send_raw(send, exc.status, exc.body_bytes(), self._error_headers(exc))
            return
        await send_raw(send, answer.status, answer.body, answer.headers)

    def _services(self) -> Services:
        services: Services | None = getattr(self.state, "services", None)
        if services is None:
            raise NotStartedError("the API is not started (its lifespan has not run)")
        return services

    def _error_headers(self, exc: ApiError) -> list[tuple[bytes, bytes]]:
        headers = [_JSON]
        if exc.retriable:
            headers.append((b"retry-after", self.retry_after))
        if exc.closes:
            headers.append((b"connection", b"close"))
        return headers


def _query(query: bytes) -> dict[str, str]:
    """The query string's parameters (the last of a repeated one wins)."""
    if not query:
        return {}
    return dict(parse_qsl(query.decode("latin-1"), keep_blank_values=True))


def _wait(query: dict[str, str]) -> float | None:
    """``?wait=``, validated as the FastAPI route does (a finite number ≥ 0)."""
    value = query.get("wait")
    if value is None:
        return None
    try:
        wait = float(value)
    except ValueError:
        raise InvalidRequest.of("query.wait", "Input should be a valid number") from None
    if not math.isfinite(wait) or wait < 0:
        raise InvalidRequest.of("query.wait", "Input should be a finite number ≥ 0")
    return wait


def _headers(scope: Scope) -> dict[str, str]:
    """The request headers by (lower-case) name, the first of a repeated one winning, as
    ``request.headers`` gives them."""
    return {bytes(key).decode("latin-1"): bytes(value).decode("latin-1")
            for key, value in reversed(scope["headers"])}


def _header(scope: Scope, name: bytes) -> str:
    """A request header ("" without it), as ``request.headers`` gives it."""
    for key, value in scope["headers"]:
        if key == name:
            return bytes(value).decode("latin-1")
    return ""


async def _read(scope: Scope, receive: Receive, limit: int, timeout: float) -> bytes:
    """The body, refused past ``limit`` bytes while it streams in or when it has not all
    arrived within ``timeout`` seconds (as ``limits.read_body``)."""
    for name, value in scope["headers"]:
        if name == b"content-length" and value.isdigit() and int(value) > limit:
            raise PayloadTooLarge(f"body is {int(value)} bytes; the limit is {limit}")
    chunks: list[bytes] = []
    size = 0
    try:
        async with asyncio.timeout(timeout):
            while True:
                message: Message = await receive()
                if message["type"] == "http.disconnect":
                    raise ClientDisconnected("the client disconnected")
                chunk = message.get("body", b"")
                size += len(chunk)
                if size > limit:
                    raise PayloadTooLarge(f"body is over the limit of {limit} bytes")
                chunks.append(chunk)
                if not message.get("more_body", False):
                    return chunks[0] if len(chunks) == 1 else b"".join(chunks)
    except TimeoutError:
        raise BodyTimeout(f"the body did not arrive within {timeout:g} s") from None


