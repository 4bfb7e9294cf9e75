"""AsyncAPI 3.0 document for the three topics, built from the same models as everything else.

The document describes the calcstream worker, so its operations are the worker's: it *receives*
requests and *sends* results and dead letters. An outside client does the opposite. Message
payloads are the pydantic models' JSON Schemas, lifted into ``components.schemas``.
``calcstream asyncapi`` writes it to ``schemas/asyncapi.json``; a test keeps that file in sync.
"""

from __future__ import annotations

from typing import Any

from pydantic.json_schema import models_json_schema

from schemas.encoding import BINARY, CONTENT_TYPE_HEADER, JSON, RESULT_BINARY, RESULT_TYPE_HEADER
from schemas.messages import (
    DLQ_HEADER_PREFIX,
    REPLY_PARTITION_HEADER,
    REPLY_PARTITION_PATTERN,
    SCHEMA_VERSION,
    TENANT_HEADER,
    TENANT_PATTERN,
    TRACEPARENT_HEADER,
    TRACEPARENT_PATTERN,
    TRACESTATE_HEADER,
    TRACESTATE_MAX_LENGTH,
    CalcRequest,
    CalcResult,
    DeadLetterHeaders,
    ErrorInfo,
    RequestFields,
)
from schemas.topics import Topics

ASYNCAPI_VERSION = "3.0.0"
KAFKA_BINDING = "0.5.0"
_SCHEMAS = "#/components/schemas/{model}"
_ID_KEY = {"type": "string", "description": "The request id (UTF-8), same as the payload's id."}
_CORRELATION = {"location": "$message.payload#/id",
                "description": "Results carry the id of the request they answer."}


def build(topics: Topics | None = None, server: str = "127.0.0.1:9092") -> dict[str, Any]:
    """The AsyncAPI document for a deployment's topic names."""
    topics = topics or Topics()
    _, defs = models_json_schema(
        [(m, "validation") for m in (CalcRequest, RequestFields, CalcResult, ErrorInfo)],
        ref_template=_SCHEMAS,
    )
    return {
        "asyncapi": ASYNCAPI_VERSION,
        "id": "urn:calcstream:asyncapi",
        "info": {
            "title": "calcstream",
            "version": f"{SCHEMA_VERSION}.0.0",
            "description": (
                "NumPy calculations over Kafka. Clients write requests to "
                f"`{topics.requests}` (key = request id) and read results, keyed by the same "
                f"id, from `{topics.results}`. Records that cannot be decoded or validated are "
                f"copied to `{topics.dlq}` with `dlq.*` headers saying why. This document "
                "describes the worker: it receives requests and sends results and dead letters."
            ),
        },
        "defaultContentType": JSON,
        "servers": {
            "local": {
                "host": server,
                "protocol": "kafka",
                "description": "`calcstream dev` runs Apache Kafka here; other clusters "
                "are selected with CALCSTREAM_BOOTSTRAP_SERVERS.",
            }
        },
        "channels": {
            "requests": _channel(topics.requests, "Calculations to do.", {
                "request": {"$ref": "#/components/messages/CalcRequest"},
                "requestBinary": {"$ref": "#/components/messages/CalcRequestBinary"},
            }),
            "results": _channel(topics.results, "One result per request.", {
                "result": {"$ref": "#/components/messages/CalcResult"},
                "resultBinary": {"$ref": "#/components/messages/CalcResultBinary"},
            }),
            "dlq": _channel(topics.dlq, "Request records that could not be processed.", {
                "deadLetter": {"$ref": "#/components/messages/DeadLetter"},
            }),
        },
        "operations": {
            "consumeRequests": {
                "action": "receive",
                "channel": {"$ref": "#/channels/requests"},
                "summary": "Workers consume requests (one consumer group, micro-batched).",
                "messages": [{"$ref": "#/channels/requests/messages/request"},
                             {"$ref": "#/channels/requests/messages/requestBinary"}],
                "reply": {
                    "channel": {"$ref": "#/channels/results"},
                    "messages": [{"$ref": "#/channels/results/messages/result"},
                                 {"$ref": "#/channels/results/messages/resultBinary"}],
                },
            },
            "publishResults": {
                "action": "send",
                "channel": {"$ref": "#/channels/results"},
                "summary": "Every request gets one result: ok, error or expired.",
                "messages": [{"$ref": "#/channels/results/messages/result"},
                             {"$ref": "#/channels/results/messages/resultBinary"}],
            },
            "publishDeadLetters": {
                "action": "send",
                "channel": {"$ref": "#/channels/dlq"},
                "summary": "Undecodable or invalid request records, with the reason in headers.",
                "messages": [{"$ref": "#/channels/dlq/messages/deadLetter"}],
            },
        },
        "components": {
            "schemas": defs["$defs"],
            "messages": _messages(topics),
        },
    }


def _channel(address: str, description: str, messages: dict[str, Any]) -> dict[str, Any]:
    return {
        "address": address,
        "description": description,
        "messages": messages,
        "bindings": {"kafka": {"topic": address, "bindingVersion": KAFKA_BINDING}},
    }


def _messages(topics: Topics) -> dict[str, Any]:
    key = {"kafka": {"key": _ID_KEY, "bindingVersion": KAFKA_BINDING}}
    example_request = CalcRequest(id="req-1", op="sum_of_squares", data=[1.0, 2.0, 3.0])
    example_result = CalcResult(
        id="req-1", status="ok", op="sum_of_squares", result=14.0, worker="host-4242",
        batch_size=12, enqueued_at=1767225600.0, completed_at=1767225600.004, queue_ms=2.9,
        compute_ms=0.05,
    )
    return {
        "CalcRequest": {
            "name": "CalcRequest",
            "title": "Request (JSON)",
            "summary": "A calculation; the default content type.",
            "contentType": JSON,
            "headers": {
                "type": "object",
                "properties": {
                    CONTENT_TYPE_HEADER: {
                        "type": "string", "enum": [JSON],
                        "description": "Optional: a record without it is JSON.",
                    },
                    TENANT_HEADER: _TENANT, **_TRACE,
                    REPLY_PARTITION_HEADER: _REPLY_PARTITION,
                    RESULT_TYPE_HEADER: _RESULT_TYPE,
                },
            },
            "payload": {"$ref": _SCHEMAS.format(model="CalcRequest")},
            "correlationId": _CORRELATION,
            "bindings": key,
            "examples": [{"name": "sum_of_squares",
                          "payload": example_request.model_dump(mode="json",
                                                                exclude_defaults=True)}],
        },
        "CalcRequestBinary": {
            "name": "CalcRequestBinary",
            "title": "Request (binary frame)",
            "summary": "A calculation whose array is raw little-endian float64, not JSON.",
            "contentType": BINARY,
            "headers": {
                "type": "object",
                "required": [CONTENT_TYPE_HEADER],
                "properties": {CONTENT_TYPE_HEADER: {"type": "string", "const": BINARY},
                               TENANT_HEADER: _TENANT, **_TRACE,
                               REPLY_PARTITION_HEADER: _REPLY_PARTITION,
                               RESULT_TYPE_HEADER: _RESULT_TYPE},
            },
            "payload": {
                "type": "string",
                "format": "binary",
                "description": (
                    "Bytes: uint32 little-endian length L; then L bytes of UTF-8 JSON with every "
                    "request field except `data` (schema `RequestFields`); then the data as raw "
                    "little-endian float64, row-major, 8 bytes per value."
                ),
            },
            "x-metadata-schema": {"$ref": _SCHEMAS.format(model="RequestFields")},
            "bindings": key,
        },
        "CalcResult": {
            "name": "CalcResult",
            "title": "Result",
            "summary": "The outcome of one request, keyed by its id.",
            "contentType": JSON,
            "headers": {
                "type": "object",
                "properties": {TENANT_HEADER: {
                    **_TENANT, "description": "The request's tenant header, copied; absent "
                    "when the request had none."},
                    TRACEPARENT_HEADER: {
                        **_TRACE[TRACEPARENT_HEADER], "description": "The request's "
                        "traceparent, copied; absent when the request had none."},
                    TRACESTATE_HEADER: {
                        **_TRACE[TRACESTATE_HEADER], "description": "The request's "
                        "tracestate, copied; absent when the request had none."}},
            },
            "payload": {"$ref": _SCHEMAS.format(model="CalcResult")},
            "correlationId": _CORRELATION,
            "bindings": key,
            "examples": [{"name": "ok", "payload": example_result.model_dump(mode="json")}],
        },
        "CalcResultBinary": {
            "name": "CalcResultBinary",
            "title": "Result (binary frame)",
            "summary": "An ok numeric result whose request asked for a binary result "
            f"(`{RESULT_TYPE_HEADER}`): its values as raw float64, not JSON.",
            "contentType": RESULT_BINARY,
            "headers": {
                "type": "object",
                "required": [CONTENT_TYPE_HEADER],
                "properties": {CONTENT_TYPE_HEADER: {"type": "string", "const": RESULT_BINARY},
                               TENANT_HEADER: _TENANT, **_TRACE},
            },
            "payload": {
                "type": "string",
                "format": "binary",
                "description": (
                    "Bytes: the magic 0x93 'C' 'S' 'R'; uint32 little-endian length L; then L "
                    "bytes of UTF-8 JSON with every result field except `result` (schema "
                    "`CalcResult`) plus `shape`, the result's dimensions ([] for a number); "
                    "then the result as raw little-endian float64, row-major, 8 bytes per "
                    "value (NaN and infinities as they are). Errors and expiries are always "
                    "JSON `CalcResult` records."
                ),
            },
            "correlationId": _CORRELATION,
            "bindings": key,
        },
        "DeadLetter": {
            "name": "DeadLetter",
            "title": "Dead letter",
            "summary": f"A record from {topics.requests} that could not be processed.",
            "description": "Key, value and original headers are the original record's; the "
            f"`{DLQ_HEADER_PREFIX}*` headers (UTF-8 text) say where it came from and why.",
            "contentType": "application/octet-stream",
            "headers": _dead_letter_headers(),
            "payload": {"description": "The original record's value bytes, untouched."},
            "bindings": {"kafka": {"key": {"description": "The original record's key bytes."},
                                   "bindingVersion": KAFKA_BINDING}},
        },
    }


_TENANT: dict[str, Any] = {
    "type": "string", "pattern": TENANT_PATTERN.pattern,
    "description": "Optional: whose request this is (UTF-8). The API sets it for requests "
    "made with an API key; a record without it belongs to no tenant. Results carry the "
    "request's value back, and the API shows a result only to callers of that tenant.",
}

_RESULT_TYPE: dict[str, Any] = {
    "type": "string", "enum": [RESULT_BINARY, JSON],
    "description": f"Optional: `{RESULT_BINARY}` asks for an ok result's values as a binary "
    "frame (message CalcResultBinary); absent, or anything else: a JSON result. The API sets "
    "it when an HTTP client asks for a binary answer (`Accept: application/x-npy` or "
    "`application/octet-stream`).",
}

_REPLY_PARTITION: dict[str, Any] = {
    "type": "string", "pattern": REPLY_PARTITION_PATTERN.pattern,
    "description": "Optional: the partition of the result topic (decimal, UTF-8) the worker "
    "writes this request's result to. The API sets it on every request (to the partition "
    "its id maps to, and it picks the ids it assigns so that this is a partition the "
    "accepting replica reads); an outside producer that reads its replies from one "
    "partition may name that one. Absent, or a partition the topic does not have: the "
    "result goes to the partition of its key (CRC-32 of the id modulo the partition "
    "count), as results always did.",
}


_TRACE: dict[str, Any] = {
    TRACEPARENT_HEADER: {
        "type": "string", "pattern": TRACEPARENT_PATTERN.pattern,
        "description": "Optional: the request's W3C trace context "
        "(https://www.w3.org/TR/trace-context/), e.g. "
        "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01. The API sets it from the "
        "submit (the client's traceparent, or its own span when tracing is on); other producers "
        "may set their own. The worker links its batch span to it and copies it onto the "
        "result.",
    },
    TRACESTATE_HEADER: {
        "type": "string", "maxLength": TRACESTATE_MAX_LENGTH,
        "description": "Optional: W3C trace state that goes with traceparent; copied with it.",
    },
}


def _dead_letter_headers() -> dict[str, Any]:
    """``dlq.*`` headers: every ``DeadLetterHeaders`` field as UTF-8 text."""
    model = DeadLetterHeaders.model_json_schema()
    properties: dict[str, Any] = {}
    for name, prop in model["properties"].items():
        text: dict[str, Any] = {"type": "string"}
        kinds = {p.get("type") for p in prop.get("anyOf", [prop])}
        if "integer" in kinds:
            text["pattern"] = "^-?[0-9]+$"
        if "enum" in prop:
            text["enum"] = list(prop["enum"])
        description = prop.get("description")
        text["description"] = f"{description} " if description else ""
        text["description"] += f"`{name}`, as text."
        properties[DLQ_HEADER_PREFIX + name] = text
    return {
        "type": "object",
        "required": [DLQ_HEADER_PREFIX + name for name in model.get("required", [])],
        "properties": properties,
        "additionalProperties": True,
    }
