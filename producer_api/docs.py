"""OpenAPI details FastAPI cannot infer: bodies the handlers read raw, and shared responses."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from pydantic import BaseModel
from pydantic.json_schema import models_json_schema

from producer_api.auth import is_public, needed_scope
from producer_api.models import (
    MATMUL_EXAMPLE,
    SUM_EXAMPLE,
    ErrorBody,
    Submission,
)
from producer_api.rendering import NPY

REF = "#/components/schemas/{model}"
NDJSON = "application/x-ndjson"


def ref(model: type[BaseModel]) -> dict[str, str]:
    """A JSON Schema reference to a model in the components."""
    return {"$ref": REF.format(model=model.__name__)}


def error(description: str, **headers: str) -> dict[str, Any]:
    """A documented error response."""
    doc: dict[str, Any] = {"model": ErrorBody, "description": description}
    if headers:
        doc["headers"] = {name: {"description": text, "schema": {"type": "string"}}
                          for name, text in headers.items()}
    return doc


RETRY_AFTER = {"Retry-After": "Seconds to wait before retrying."}
UNAVAILABLE = error("The broker did not acknowledge in time (`broker_unavailable`), or too "
                    "many requests are in progress (`overloaded`); nothing was accepted.",
                    **RETRY_AFTER)
OVERLOADED = error("Too many requests are in progress (`overloaded`).", **RETRY_AFTER)
TOO_LARGE = error("The body (or an NDJSON line) is over its byte limit.")
TOO_SLOW = error("The body did not arrive within body_timeout_s (an NDJSON stream: a line was "
                 "not completed within it); the connection is closed. A cut-off NDJSON stream "
                 "keeps what it sent before: `summary` counts it.")
INVALID = error("The request breaks the contract; `error.fields` names each field.")

RESULT_HEADERS = {"Calcstream-Result": {
    "description": "Binary answers: every field of the result but `result`, as a JSON object, "
    "with `shape` (the result's dimensions, [] for a number).",
    "schema": {"type": "string"}}}
BINARY_RESULT = {
    NPY: {"schema": {"type": "string", "format": "binary",
                     "description": "The result's values as a NumPy .npy file (float64)."}},
    "application/octet-stream": {"schema": {
        "type": "string", "format": "binary",
        "description": "The result's values as raw little-endian float64, row-major; the "
        "shape is in Calcstream-Result."}},
}


def result(description: str, model: Any, **headers: dict[str, Any]) -> dict[str, Any]:
    """A 200 that answers the result document as JSON, or its values in binary when the client
    asks for them with ``Accept`` (``producer_api.rendering``)."""
    return {"model": model, "content": BINARY_RESULT, "headers": {**RESULT_HEADERS, **headers},
            "description": description + " With `Accept: application/x-npy` or "
            "`application/octet-stream`, an `ok` result's values in that form (the rest of "
            "the result in Calcstream-Result); a state without values (queued, error, "
            "expired) is answered as JSON whatever the Accept."}


SUBMIT_BODY: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "content": {
            "application/json": {
                "schema": ref(Submission),
                "examples": {
                    "sum": {"summary": "A reduction", "value": SUM_EXAMPLE},
                    "matmul": {"summary": "With a client id and args", "value": MATMUL_EXAMPLE},
                },
            },
            "application/octet-stream": {
                "schema": {"type": "string", "format": "binary"},
                "description": "The data alone, as raw little-endian float64 values (8 bytes "
                "each, row-major; numpy: `a.astype('<f8').tobytes()`); `op` (and `args`, `id`, "
                "`deadline`) in the query. Nothing is parsed as text: the fastest way in for "
                "large arrays. A length that is not a multiple of 8, NaN or Infinity, more "
                "values than max_array_length or a missing `op` is a 422.",
            },
            NPY: {
                "schema": {"type": "string", "format": "binary"},
                "description": "The data as a NumPy .npy file (numpy.save; 1-D or 2-D, integer "
                "or float dtype, read row-major); `op` and the rest in the query, as for "
                "application/octet-stream.",
            },
        },
    }
}

BATCH_BODY: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "content": {
            "application/json": {
                "schema": {"type": "array", "items": ref(Submission), "minItems": 1},
                "example": [SUM_EXAMPLE, {"op": "mean", "data": [4, 5, 6]}],
            },
            NDJSON: {
                "schema": {"type": "string"},
                "example": '{"op": "sum", "data": [1, 2]}\n{"op": "max", "data": [3, 1]}\n',
            },
            NPY: {
                "schema": {"type": "string", "format": "binary"},
                "description": "A NumPy .npy file (numpy.save), 1-D or 2-D, integer or float "
                "dtype; one request per row, op and args from the query. "
                "application/octet-stream is read the same way.",
            },
        },
    }
}


def install(app: FastAPI, extra_models: tuple[type[BaseModel], ...] = (Submission,)) -> None:
    """Make ``app.openapi()`` include the models referenced only from ``openapi_extra``."""

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = get_openapi(title=app.title, version=app.version,
                                 description=app.description, routes=app.routes)
            _, defs = models_json_schema([(m, "validation") for m in extra_models],
                                         ref_template=REF)
            components = schema.setdefault("components", {}).setdefault("schemas", {})
            for name, model_schema in defs.get("$defs", {}).items():
                components.setdefault(name, model_schema)
            _document_keys(schema)
            app.openapi_schema = schema
        return app.openapi_schema

    setter: Callable[[], dict[str, Any]] = openapi
    app.openapi = setter  # type: ignore[method-assign]


_SCHEME = "apiKey"
_AUTH_RESPONSES = {
    "401": {"description": "With API keys: no key, or one that is not valid (unknown, revoked, "
                           "malformed, or sent in the URL).",
            "headers": {"WWW-Authenticate": {"schema": {"type": "string"}}},
            "content": {"application/json": {"schema": {"$ref": REF.format(model="ErrorBody")}}}},
    "403": {"description": "With API keys: the key lacks the scope this operation needs.",
            "content": {"application/json": {"schema": {"$ref": REF.format(model="ErrorBody")}}}},
}
_QUOTA_RESPONSE = {
    "description": "The tenant is over a quota (rate_limited, quota_exceeded); retry after "
                   "Retry-After.",
    "headers": {"Retry-After": {"schema": {"type": "integer"}}},
    "content": {"application/json": {"schema": {"$ref": REF.format(model="ErrorBody")}}},
}


def _document_keys(schema: dict[str, Any]) -> None:
    """Every operation that holds data: the bearer scheme (optional: an API without keys needs
    none), its scope, and its 401/403 (and 429 on /v1/calculations) answers."""
    schema["components"]["securitySchemes"] = {_SCHEME: {
        "type": "http", "scheme": "bearer",
        "description": "An API key (`calcstream keys create`), needed when the API runs with "
                       "CALCSTREAM_API_KEYS_FILE; each key sees only its tenant's calculations."}}
    for path, operations in schema.get("paths", {}).items():
        concrete = path.replace("{request_id}", "id")
        if is_public(concrete):
            continue
        for method, operation in operations.items():
            scope = needed_scope(method.upper(), concrete)
            operation["security"] = [{_SCHEME: []}, {}]
            if scope is not None:
                note = f"Needs the `{scope.value}` scope (with API keys)."
                operation["description"] = f"{operation.get('description', '')}\n\n{note}".strip()
            responses = operation.setdefault("responses", {})
            for status, answer in _AUTH_RESPONSES.items():
                responses.setdefault(status, answer)
            if concrete.startswith("/v1/calculations"):
                responses.setdefault("429", _QUOTA_RESPONSE)
