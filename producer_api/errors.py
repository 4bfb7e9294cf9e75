"""Errors the API answers with. Each carries its HTTP status and a stable code.

    ApiError
    ├── InvalidRequest        422  the body breaks the contract (names the field)
    ├── PayloadTooLarge       413  a body or NDJSON line over its limit
    ├── BodyTimeout           408  the body (or an NDJSON line) came too slowly
    ├── Unauthorized          401  no API key, or one that is not (or no longer) valid
    ├── Forbidden             403  a valid key without the scope the endpoint needs
    ├── OriginNotAllowed      403  a WebSocket handshake from a foreign page
    ├── UnsupportedMediaType  415  a body in a content type the endpoint does not read
    ├── NotFound              404  an id this replica never accepted or has forgotten
    ├── Conflict              409  a known client id re-posted with a different body
    ├── ClientDisconnected    400  the client left mid-body (nobody reads the answer)
    ├── RateLimited           429  a tenant's quota: too fast, or too much in progress
    └── Unavailable           503  the broker did not acknowledge in time (retriable)
        ├── Overloaded             too many requests (or sockets) in progress: shed
        └── NotStartedError        the app's lifespan has not started its clients

Every error is rendered as ``{"error": {"code", "message", "fields"?}}``. ``retriable`` ones
are answered with ``Retry-After``; ``closes`` ones with ``Connection: close``: a client too slow
to send its body loses its connection. (A 413 keeps it: the server discards the rest of the
body unbuffered, because closing on unread bytes resets the connection and the client never
sees the answer.)
"""

from __future__ import annotations

from typing import Any

import orjson


class ApiError(Exception):
    """Base of the errors the API turns into responses."""

    status = 500
    code = "internal_error"
    retriable = False
    closes = False

    def __init__(self, message: str, **extra: Any) -> None:
        super().__init__(message)
        self.message = message
        self.extra = extra

    def body(self) -> dict[str, Any]:
        """The JSON error document."""
        return {"error": {"code": self.code, "message": self.message}, **self.extra}

    def body_bytes(self) -> bytes:
        """The JSON error document, encoded."""
        return orjson.dumps(self.body())


class InvalidRequest(ApiError):
    """The request does not fit the contract; ``fields`` names each offending field."""

    status = 422
    code = "invalid_request"

    def __init__(self, fields: list[dict[str, str]], **extra: Any) -> None:
        first = fields[0]
        super().__init__(f"{first['field']}: {first['message']}", **extra)
        self.fields = fields

    def body(self) -> dict[str, Any]:
        doc = super().body()
        doc["error"]["fields"] = self.fields
        return doc

    @classmethod
    def of(cls, field: str, message: str) -> InvalidRequest:
        """An error about one field."""
        return cls([{"field": field, "message": message}])


class PayloadTooLarge(ApiError):
    """A body (or NDJSON line, or WebSocket message) is over its byte limit."""

    status = 413
    code = "payload_too_large"


class BodyTimeout(ApiError):
    """The client took longer than ``body_timeout_s`` to send its body (or an NDJSON line)."""

    status = 408
    code = "body_timeout"
    closes = True


class Unauthorized(ApiError):
    """No API key, a malformed one, or one this API does not know (or has revoked)."""

    status = 401
    code = "unauthorized"


class Forbidden(ApiError):
    """The key is valid but lacks the scope this endpoint needs."""

    status = 403
    code = "forbidden"


class OriginNotAllowed(ApiError):
    """A WebSocket handshake from an Origin not in ``ws_allowed_origins``."""

    status = 403
    code = "origin_not_allowed"


class UnsupportedMediaType(ApiError):
    """A body in a content type this endpoint does not read."""

    status = 415
    code = "unsupported_media_type"


class NotFound(ApiError):
    """No such id here."""

    status = 404
    code = "not_found"


class Conflict(ApiError):
    """The client id is already used by a different request."""

    status = 409
    code = "id_conflict"


class ClientDisconnected(ApiError):
    """The client went away while sending its body; the answer goes nowhere."""

    status = 400
    code = "client_disconnected"


class RateLimited(ApiError):
    """The caller's tenant is over a quota (``producer_api.quotas``); retry after
    ``retry_after`` seconds."""

    status = 429
    code = "rate_limited"
    retriable = True

    def __init__(self, message: str, *, code: str | None = None,
                 retry_after: float = 1.0) -> None:
        super().__init__(message)
        if code is not None:
            self.code = code
        self.retry_after = retry_after


class Unavailable(ApiError):
    """The broker is unreachable or too slow; try again later."""

    status = 503
    code = "broker_unavailable"
    retriable = True


class Overloaded(Unavailable):
    """More requests (or WebSocket connections) in progress than the API takes at once."""

    code = "overloaded"


class NotStartedError(Unavailable, RuntimeError):
    """A client was used before the lifespan started it (or after it stopped)."""

    code = "not_started"
