"""The door: what is let in before any request is read, so an overloaded API stays responsive.

    HTTP on /v1/calculations...   at most ``max_concurrent_requests`` in progress; beyond it
                                  503 ``overloaded`` + ``Retry-After`` at once, never a queue
    WebSocket handshakes          403 ``origin_not_allowed`` from a browser page whose Origin
                                  is not in ``ws_allowed_origins``; 503 ``overloaded`` beyond
                                  ``ws_max_connections`` open sockets

Everything else (health, readiness, metrics, stats, the dashboard, the docs, the op catalogue)
passes untouched, so an API shedding load still says how it is doing. The counts are plain
integers on ``ApiStats`` (one event loop, no locks); refusals are counted by endpoint and
reason, refused submits also as rejected requests of their way in.
"""

from __future__ import annotations

from starlette.types import ASGIApp, Receive, Scope, Send

from producer_api.errors import ApiError, OriginNotAllowed, Overloaded
from producer_api.responses import send_error
from producer_api.settings import ApiSettings, normal_origin
from producer_api.stats import ApiStats

GUARDED = "/v1/calculations"
_JSON = (b"content-type", b"application/json")


class Admission:
    """ASGI middleware in front of the whole app (the submit fast path included)."""

    def __init__(self, app: ASGIApp, stats: ApiStats, settings: ApiSettings) -> None:
        self.app = app
        self.stats = stats
        self.max_requests = settings.max_concurrent_requests
        self.max_sockets = settings.ws_max_connections
        self.origins = settings.ws_origins
        self.retry_after = str(settings.retry_after_s).encode()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["path"].startswith(GUARDED):
            await self._http(scope, receive, send)
        elif scope["type"] == "websocket":
            await self._websocket(scope, receive, send)
        else:
            await self.app(scope, receive, send)

    async def _http(self, scope: Scope, receive: Receive, send: Send) -> None:
        stats = self.stats
        if stats.requests_in_progress >= self.max_requests:
            exc = Overloaded(f"{self.max_requests} requests are in progress; retry later")
            self._count(_endpoint(scope), exc)
            await send_error(send, exc, (b"retry-after", self.retry_after))
            return
        stats.requests_in_progress += 1
        try:
            await self.app(scope, receive, send)
        finally:
            stats.requests_in_progress -= 1

    async def _websocket(self, scope: Scope, receive: Receive, send: Send) -> None:
        stats = self.stats
        origin = _header(scope, b"origin")
        if self.origins and origin is not None and normal_origin(origin) not in self.origins:
            await self._deny(scope, receive, send, OriginNotAllowed(
                f"Origin {origin!r} may not open a WebSocket here"))
            return
        if stats.ws_connections >= self.max_sockets:
            await self._deny(scope, receive, send, Overloaded(
                f"{self.max_sockets} WebSocket connections are open; retry later"))
            return
        stats.ws_connections += 1
        try:
            await self.app(scope, receive, send)
        finally:
            stats.ws_connections -= 1

    async def _deny(self, scope: Scope, receive: Receive, send: Send, exc: ApiError) -> None:
        """Refuse a handshake with an HTTP answer (403 if the server cannot send one)."""
        self._count("ws", exc)
        await receive()  # websocket.connect
        if "websocket.http.response" not in scope.get("extensions", {}):
            await send({"type": "websocket.close", "code": 1008})
            return
        headers = [_JSON]
        if exc.retriable:
            headers.append((b"retry-after", self.retry_after))
        await send({"type": "websocket.http.response.start", "status": exc.status,
                    "headers": headers})
        await send({"type": "websocket.http.response.body", "body": exc.body_bytes()})

    def _count(self, endpoint: str, exc: ApiError) -> None:
        self.stats.refused[(endpoint, exc.status, exc.code)] += 1
        intake = self.stats.intakes().get(_VIA.get(endpoint, ""))
        if intake is not None:
            intake.reject(exc)


_VIA = {"submit": "single", "batch": "batch"}


def _endpoint(scope: Scope) -> str:
    """The guarded endpoint a request is for, as labelled in the metrics."""
    if scope["method"] == "POST":
        return "batch" if scope["path"].rstrip("/").endswith("/batch") else "submit"
    return "result"


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope["headers"]:
        if key == name:
            return bytes(value).decode("latin-1")
    return None
