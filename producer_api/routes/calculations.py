"""``/v1/calculations``: submit one, submit many, read the state of one."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable, Iterable
from typing import Annotated, Any

import orjson
from fastapi import APIRouter, Path, Query, Request, Response

from producer_api import docs, intake, jsonarray
from producer_api.acceptance import BatchItem
from producer_api.auth import PrincipalDep
from producer_api.deps import Services, ServicesDep
from producer_api.errors import (
    ApiError,
    InvalidRequest,
    PayloadTooLarge,
    UnsupportedMediaType,
)
from producer_api.limits import read_body, read_lines
from producer_api.models import Accepted, BatchSummary, State
from producer_api.rendering import BINARY_TYPES, NPY, Headers, wanted
from producer_api.responses import OrjsonResponse
from producer_api.settings import ApiSettings
from producer_api.tracing import carried
from producer_api.usecase import (
    JSON_TYPES,
    media_type,
    require_submit_type,
    state_of,
    submit_one,
)
from schemas.messages import ID_CHARACTERS, ID_MAX_LENGTH

router = APIRouter(prefix="/v1/calculations", tags=["calculations"])

NDJSON_TYPES = (docs.NDJSON, "application/jsonl", "application/x-jsonlines")

Wait = Annotated[float | None, Query(
    ge=0, allow_inf_nan=False,
    description="Seconds to wait for the result (clamped to the server's max_wait_s, 30 by "
    "default). 200 with the result if it arrives in time, else 202 as without wait.")]
RequestIdPath = Annotated[str, Path(
    pattern=rf"^[{ID_CHARACTERS}]+$", max_length=ID_MAX_LENGTH,
    description="The request id.")]


@router.post(
    "", status_code=202,
    summary="Submit one calculation",
    description="Answers only after the broker acknowledged the request. Re-posting the same "
    "client `id` with the same body returns its current state without publishing again; the "
    "same `id` with another body is a 409.",
    responses={
        200: docs.result("The result (with `?wait=`, or already known). Asking for a binary "
                         "answer also asks the worker for a binary result, which is relayed "
                         "without being parsed.", State,
                         Location={"description": "Where to poll.",
                                   "schema": {"type": "string"}}),
        202: {"model": Accepted, "description": "Queued; poll the Location.",
              "headers": {"Location": {"description": "Where to poll.",
                                       "schema": {"type": "string"}}}},
        408: docs.TOO_SLOW, 409: docs.error("The id is already used by a different request."),
        413: docs.TOO_LARGE,
        415: docs.error("A Content-Type other than application/json (a body without one is "
                        "read as JSON), application/octet-stream or application/x-npy."),
        422: docs.INVALID, 503: docs.UNAVAILABLE,
    },
    openapi_extra=docs.SUBMIT_BODY,
)
async def submit(
    request: Request, services: ServicesDep, principal: PrincipalDep, wait: Wait = None,
    op: Annotated[str | None, Query(max_length=64, description="Binary bodies: the op.")] = None,
    args: Annotated[str | None, Query(description="Binary bodies: the op's args as a JSON "
                                      "object, e.g. {\"ddof\": 1}.")] = None,
    id: Annotated[str | None, Query(pattern=rf"^[{ID_CHARACTERS}]+$", max_length=ID_MAX_LENGTH,
                                    description="Binary bodies: a client id (idempotent "
                                    "re-posts).")] = None,
    deadline: Annotated[float | None, Query(allow_inf_nan=False, description="Binary bodies: "
                                            "the request's deadline, UNIX seconds.")] = None,
) -> Response:
    """Validate, publish, and answer 202 (or 200 with the result when it is there)."""
    try:
        ctype = require_submit_type(request.headers.get("content-type", ""))
        body = await read_body(request, services.settings.max_body_bytes,
                               services.settings.body_timeout_s)
        query = {k: str(v) for k, v in (("op", op), ("args", args), ("id", id),
                                        ("deadline", deadline)) if v is not None}
        answer = await submit_one(services, bytes(body), wait, principal.tenant, ctype, query,
                                  carried(request.scope["headers"]),
                                  wanted(request.headers.get("accept", "")),
                                  request.headers.get("authorization", ""))
    except ApiError as exc:
        services.stats.single.reject(exc)
        raise
    return _raw(answer.status, answer.body, answer.headers)


@router.post(
    "/batch", status_code=202,
    summary="Submit many calculations",
    description="Three bodies, by Content-Type:\n\n"
    "* `application/json`: an array of requests (at most max_batch_count, 10,000 by default).\n"
    "* `application/x-ndjson`: one request per line, any number of lines; each line is "
    "published as it is read, so the body may be far larger than memory. Only each line is "
    "size-limited.\n"
    "* `application/x-npy` (or `application/octet-stream`): a NumPy `.npy` array, one request "
    "per row, with `op` (and `args`) from the query; the fast path for numeric bulk.\n\n"
    "Valid items are published even when others are rejected; the answer counts both and lists "
    "each item's id. A 503 body carries the summary of what was accepted before the broker "
    "failed.",
    response_model=None,
    responses={
        202: {"model": BatchSummary, "description": "Every valid item was acknowledged."},
        408: docs.TOO_SLOW, 413: docs.TOO_LARGE,
        415: docs.error("A Content-Type other than the three above."),
        422: docs.INVALID, 503: docs.UNAVAILABLE,
    },
    openapi_extra=docs.BATCH_BODY,
)
async def submit_batch(
    request: Request,
    services: ServicesDep,
    principal: PrincipalDep,
    op: Annotated[str | None, Query(max_length=64, description=".npy bodies: the op of every "
                                    "row.")] = None,
    args: Annotated[str | None, Query(description=".npy bodies: the op's args as a JSON "
                                      "object, e.g. {\"ddof\": 1}.")] = None,
    id_prefix: Annotated[str | None, Query(
        max_length=100, description=".npy bodies: ids become <id_prefix>-<row>; with a prefix "
        "a re-post of the same file is idempotent. Default: a fresh random prefix.")] = None,
    ids: Annotated[bool, Query(description="List each item's id in the answer (turn off for "
                                           "very long NDJSON streams).")] = True,
) -> Response:
    """Publish every valid item; answer with counts, ids and per-item errors."""
    try:
        return await _submit_batch(request, services, principal.tenant, op, args, id_prefix,
                                   ids)
    except ApiError as exc:
        services.stats.batch.reject(exc)
        raise


async def _submit_batch(request: Request, services: Services, tenant: str, op: str | None,
                        args: str | None, id_prefix: str | None, ids: bool) -> Response:
    s = services.settings
    ctype = media_type(request.headers.get("content-type", ""))
    extra: dict[str, Any] = {}
    items: AsyncIterator[BatchItem]
    quota = services.quotas.max_batch_items if services.quotas is not None else None
    if ctype in NDJSON_TYPES:
        items = _ndjson_items(request, s, quota, services.reader.routes.mint)
    elif ctype in JSON_TYPES:
        array = await _json_array(await read_body(request, s.max_batch_bytes, s.body_timeout_s),
                                  s, quota)  # items: intake.Plain, or JSON values
        items = _aiter(_json_items(array, s, services.reader.routes.mint))
    elif ctype in BINARY_TYPES:
        if op is None:
            raise InvalidRequest.of("op", "an .npy body needs ?op=")
        body = await read_body(request, s.max_batch_bytes, s.body_timeout_s)
        rows, prefix = intake.from_npy(body, op, intake.parse_args(args), id_prefix,
                                       s.max_array_length, time.time(), max_rows=quota)
        items = _aiter((i, r if isinstance(r, intake.Prepared) else r.error)
                       for i, r in enumerate(rows))
        extra["id_prefix"] = prefix
    else:
        raise UnsupportedMediaType(
            f"Content-Type {ctype!r}; send application/json, {docs.NDJSON} or {NPY}")
    summary = await services.acceptor.accept_many(items, keep_ids=ids,
                                                   intake=services.stats.batch, tenant=tenant,
                                                   trace=carried(request.scope["headers"]))
    return OrjsonResponse({**summary.document(), **extra}, 202)


@router.get(
    "/{request_id}",
    summary="The state of one calculation",
    description="`queued` until the result arrives, then the result document (status ok, "
    "error or expired). 404 for an id this deployment never accepted or has forgotten: ids "
    "are remembered for result_ttl_s (15 min by default) after their last change, and at most "
    "result_store_max (100,000) of them. Any replica answers for any id: one that does not "
    "read the id's reply partition reads it first (a 503 with Retry-After if that takes more "
    "than reply_lookup_s).",
    responses={200: docs.result("Queued, or the result.", State),
               404: docs.error("Unknown or forgotten id."), 422: docs.INVALID,
               503: docs.OVERLOADED},
    response_model=None,
)
async def get_state(request_id: RequestIdPath, services: ServicesDep,
                    principal: PrincipalDep, request: Request) -> Response:
    """The current state of a request of the caller's tenant."""
    return _raw(*await state_of(services, request_id, principal.tenant, request.headers))


def _raw(status: int, body: bytes, headers: Headers) -> Response:
    """A response of ready bytes and headers (``content-type`` among them)."""
    response = Response(body, status)
    response.raw_headers.extend(headers)
    return response


async def _json_array(body: bytes | bytearray, s: ApiSettings, quota: int | None
                      ) -> list[Any]:
    try:
        # Binary records: an item's data may be read straight into float64 (floatjson).
        array = await jsonarray.parse(body, intake.read_item if s.publish_binary else orjson.loads)
    except orjson.JSONDecodeError as exc:
        raise InvalidRequest.of("body", f"not valid JSON: {exc}") from None
    if not isinstance(array, list) or not array:
        raise InvalidRequest.of("body", "expected a non-empty JSON array of requests")
    if len(array) > s.max_batch_count:
        raise InvalidRequest.of("body", f"{len(array)} items; the limit is {s.max_batch_count}")
    if quota is not None and len(array) > quota:
        raise InvalidRequest.of("body", f"{len(array)} items; this tenant's limit is {quota} "
                                "per batch (tenant_max_batch_items)")
    return array


def _json_items(array: list[Any], s: ApiSettings, mint: Callable[[], str]
                ) -> Iterable[BatchItem]:
    now = time.time()
    for index, doc in enumerate(array):
        try:
            yield index, intake.from_item(doc, s.max_array_length, now,
                                          binary=s.publish_binary, mint=mint)
        except InvalidRequest as exc:
            yield index, exc


async def _ndjson_items(request: Request, s: ApiSettings, quota: int | None,
                        mint: Callable[[], str]) -> AsyncIterator[BatchItem]:
    async for index, line in read_lines(request, s.max_body_bytes, s.body_timeout_s):
        if quota is not None and index >= quota:
            raise PayloadTooLarge(f"the stream carries more than {quota} items, this tenant's "
                                  "limit per batch (tenant_max_batch_items)")
        if line is None:
            yield index, PayloadTooLarge(f"line is over the limit of {s.max_body_bytes} bytes")
            continue
        try:
            yield index, intake.from_json(line, s.max_array_length, time.time(),
                                          s.publish_binary, mint)
        except ApiError as exc:
            yield index, exc


async def _aiter(items: Iterable[BatchItem]) -> AsyncIterator[BatchItem]:
    for item in items:
        yield item
