"""A single submit, with no HTTP in it: what ``POST /v1/calculations`` does, for the FastAPI
route (``routes/calculations.py``) and the ASGI fast path (``fastpath.py``) alike."""

from __future__ import annotations

import time

from producer_api import intake
from producer_api.deps import Services
from producer_api.errors import UnsupportedMediaType

JSON_TYPES = ("", "application/json")


def media_type(content_type: str) -> str:
    """The media type of a Content-Type value: parameters dropped, lower case."""
    return content_type.split(";")[0].strip().lower()


def require_json(content_type: str) -> None:
    """``UnsupportedMediaType`` unless a single submit's body is JSON (or has no Content-Type,
    read as JSON)."""
    ctype = media_type(content_type)
    if ctype not in JSON_TYPES:
        raise UnsupportedMediaType(f"Content-Type {ctype!r}; send application/json")


async def submit_one(services: Services, body: bytes, wait: float | None, tenant: str = ""
                     ) -> tuple[int, bytes, str]:
    """Accept one raw JSON body of ``tenant``'s: (status, answer, location).

    Counts the request as accepted (or deduplicated); callers count rejections.
    """
    s = services.settings
    item = intake.from_json(body, s.max_array_length, time.time(), s.publish_binary)
    outcome = await services.acceptor.accept(item, min(wait, s.max_wait_s) if wait else 0.0,
                                             tenant)
    if outcome.existing:
        services.stats.single.deduplicated += 1
    else:
        services.stats.single.accepted += 1
    location = f"/v1/calculations/{outcome.id}"
    if outcome.result is not None:
        return 200, outcome.result, location
    return 202, b'{"id":"%s","status":"queued"}' % outcome.id.encode(), location
