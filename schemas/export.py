"""JSON Schema documents for the wire contracts (``calcstream schema`` writes them)."""

from __future__ import annotations

from typing import Any

from schemas.encoding import BINARY, CONTENT_TYPE_HEADER, JSON
from schemas.messages import (
    SCHEMA_VERSION,
    CalcRequest,
    CalcResult,
    DeadLetterHeaders,
    RecordHeaders,
    RequestFields,
)
from schemas.topics import Topics


def export_all() -> dict[str, dict[str, Any]]:
    """File name → JSON Schema, for every contract."""
    topics = Topics()
    docs = {
        "request.json": _doc(CalcRequest, f"Value of a JSON record on {topics.requests} "
                             f"(key = id, header {CONTENT_TYPE_HEADER}: {JSON} or absent)."),
        "request-binary-metadata.json": _doc(
            RequestFields, f"Metadata part of a binary record on {topics.requests} (header "
            f"{CONTENT_TYPE_HEADER}: {BINARY}); see schemas/encoding.py for the frame."),
        "result.json": _doc(CalcResult, f"Value of a record on {topics.results} (key = id)."),
        "record-headers.json": _doc(
            RecordHeaders, f"Headers of records on {topics.requests} and {topics.results}, "
            "UTF-8 encoded; other headers are ignored."),
        "dead-letter-headers.json": _doc(
            DeadLetterHeaders, f"Headers of a record on {topics.dlq}, each prefixed 'dlq.' and "
            "UTF-8 encoded; key and value are the original record's bytes."),
    }
    return docs


def _doc(model: Any, description: str) -> dict[str, Any]:
    schema: dict[str, Any] = model.model_json_schema()
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["$id"] = f"urn:calcstream:schema:v{SCHEMA_VERSION}:{model.__name__}"
    schema["description"] = description
    return schema
