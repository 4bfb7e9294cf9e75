"""``/v1/asyncapi.json`` and ``/v1/limits``: what the topics carry and what this API accepts.

Both come from the settings alone, so they answer before the broker does. The AsyncAPI document
is built from the wire models for this deployment's topic names (with the default names it is
the committed ``schemas/asyncapi.json``). The limits let clients size their batches and
subscriptions instead of learning them from 413s and 422s.
"""

from __future__ import annotations

from functools import cache
from typing import Any

import orjson
from fastapi import APIRouter, Request, Response
from pydantic import BaseModel, Field

from producer_api.responses import OrjsonResponse
from producer_api.settings import ApiSettings
from schemas.asyncapi import build
from schemas.topics import Topics

router = APIRouter(prefix="/v1", tags=["contracts"])


class Limits(BaseModel):
    """The limits this API enforces (see the settings of the same names)."""

    max_body_bytes: int = Field(description="Largest single-request body and NDJSON line.")
    max_batch_bytes: int = Field(description="Largest JSON-array or .npy batch body.")
    max_array_length: int = Field(description="Most values in one request's data.")
    max_batch_count: int = Field(description="Most requests in one JSON-array batch.")
    max_wait_s: float = Field(description="Longest ?wait= honoured.")
    body_timeout_s: float = Field(description="Seconds a body may take to arrive (for NDJSON: "
                                  "each line).")
    ws_max_message_bytes: int = Field(description="Largest WebSocket message from a client.")
    ws_max_subscriptions: int = Field(description="Ids one WebSocket may watch at once.")


@cache
def _asyncapi(topics: Topics) -> bytes:
    return orjson.dumps(build(topics))


@router.get("/asyncapi.json", summary="The AsyncAPI document of the topics",
            response_model=dict[str, Any],
            description="AsyncAPI 3.0: the request, result and dead-letter topics of this "
            "deployment, with payload and header schemas from the same pydantic models the "
            "API and the workers use. For clients that talk to Kafka directly.")
async def asyncapi(request: Request) -> Response:
    """The AsyncAPI 3.0 document for this deployment's topic names."""
    settings: ApiSettings = request.app.state.settings
    return OrjsonResponse(_asyncapi(settings.topics))


@router.get("/limits", summary="The limits this API enforces", response_model=Limits)
async def limits(request: Request) -> Response:
    """Body sizes, batch counts and WebSocket limits, for clients that split their input."""
    settings: ApiSettings = request.app.state.settings
    return OrjsonResponse(Limits.model_validate(settings.model_dump(include=set(
        Limits.model_fields))).model_dump())
