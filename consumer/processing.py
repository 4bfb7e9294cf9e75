"""The compute step: raw request records in, encoded result and dead-letter records out.

``process_batch`` is the only blocking code the worker runs, and it runs in a thread
(``asyncio.to_thread``): decoding, validation, the NumPy kernels and result encoding all happen
here, so the event loop only moves bytes.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple, Protocol

import numpy as np
import orjson
from pydantic import ValidationError

from consumer import ops
from consumer.cache import ResultCache, cache_key
from consumer.kernels import group_by
from schemas.encoding import (
    CONTENT_TYPE_HEADER,
    RESULT_BINARY,
    DecodedRequest,
    DecodeError,
    content_type,
    decode_requests,
    is_result_frame,
    json_safe,
    loose_json,
    peek_id,
    result_array,
    result_frame,
    wants_binary_result,
)
from schemas.messages import (
    SCHEMA_VERSION,
    DeadLetterHeaders,
    is_request_id,
    reply_partition_of,
    result_headers,
)

logger = logging.getLogger(__name__)

_RESULT_BINARY = RESULT_BINARY.encode()


class RequestRecord(Protocol):
    """What the compute step reads of a consumed record (aiokafka's ConsumerRecord fits)."""

    topic: str
    partition: int
    offset: int
    timestamp: int
    key: bytes | None
    value: bytes | None
    headers: Sequence[tuple[str, bytes]]


@dataclass(frozen=True, slots=True)
class BatchContext:
    """Who is computing, for the result and dead-letter metadata."""

    worker: str
    group: str
    max_result_bytes: int | None = None
    cache: ResultCache | None = None


@dataclass(slots=True)
class DeadLetter:
    """A record to write to the dead-letter topic."""

    key: bytes | None
    value: bytes | None
    headers: list[tuple[str, bytes]]


class ResultRecord(NamedTuple):
    """A result to write: keyed by its id, with the request's tenant and trace headers when it
    had them (``schemas.messages.RESULT_HEADERS``), to the partition the request's
    reply-partition header names (None: by key)."""

    key: bytes
    value: bytes
    headers: list[tuple[str, bytes]] | None = None
    partition: int | None = None


@dataclass(slots=True)
class BatchOutput:
    """Encoded records the worker must publish before it commits the batch's offsets."""

    results: list[ResultRecord] = field(default_factory=list)
    dead_letters: list[DeadLetter] = field(default_factory=list)
    statuses: dict[str, int] = field(default_factory=dict)
    compute_ms: float = 0.0
    cache_hits: int = 0


@dataclass(slots=True)
class _Valid:
    record: RequestRecord
    request: DecodedRequest
    op: ops.Op
    args: ops.OpArgs


def process_batch(
    records: Sequence[RequestRecord], ctx: BatchContext, clock: Callable[[], float] = time.time
) -> BatchOutput:
    """Decode, validate, compute and encode one batch. Never raises for a bad record."""
    out = BatchOutput()
    valid: list[_Valid] = []
    started = clock()
    decoded = decode_requests([(r.value, content_type(r.headers)) for r in records])
    for record, request in zip(records, decoded, strict=True):
        try:
            if isinstance(request, ValueError):
                raise request
            op = ops.get(request.fields.op)
            args = op.parse(request.data.size, request.fields.args)
        except DecodeError as exc:
            _reject(out, record, ctx, "decode", exc, started, len(records))
            continue
        except (ValidationError, ValueError) as exc:
            _reject(out, record, ctx, "validate", exc, started, len(records))
            continue
        if request.fields.deadline is not None and request.fields.deadline < started:
            _emit(out, record, ctx, request.fields.id, request.fields.op, "expired", started,
                  batch_size=len(records), submitted=request.fields.submitted_at,
                  error={"code": "deadline_exceeded",
                         "message": "the deadline passed before the request was computed"})
            continue
        valid.append(_Valid(record, request, op, args))

    keys: list[bytes | None] = [None] * len(valid)
    cached: list[bytes | None] = [None] * len(valid)
    worth = [i for i, v in enumerate(valid) if v.op.cached] if ctx.cache is not None else []
    if ctx.cache is not None and worth:
        wanted = [cache_key(valid[i].op.name, valid[i].args.model_dump(), valid[i].request.data)
                  for i in worth]
        for i, key, hit in zip(worth, wanted, ctx.cache.get_many(wanted), strict=True):
            keys[i], cached[i] = key, hit
    misses = [i for i, hit in enumerate(cached) if hit is None]
    values: list[tuple[Any, dict[str, str] | None]] = [(None, None)] * len(valid)
    for i, value in zip(misses, _compute([valid[i] for i in misses]), strict=True):
        values[i] = value
    finished = clock()
    out.compute_ms = (finished - started) * 1000.0
    fresh: list[tuple[bytes, bytes]] = []
    for i, (item, (value, error)) in enumerate(zip(valid, values, strict=True)):
        fields = item.request.fields
        hit = cached[i]
        if hit is not None:
            out.cache_hits += 1
            _emit(out, item.record, ctx, fields.id, fields.op, "ok", started,
                  batch_size=len(records), result=_cached(hit, item.record), completed=finished,
                  compute_ms=out.compute_ms, submitted=fields.submitted_at, cached=True)
        elif error is None:
            cache_as = keys[i]
            limit = ctx.max_result_bytes
            if cache_as is not None and limit is not None and _numbers(value) * 2 > limit:
                cache_as = None  # cannot be published (see _emit): not worth encoding, nor keeping
            if ctx.cache is not None and cache_as is not None:
                # Kept as the request asked: binary results are never written as JSON here.
                if wants_binary_result(item.record.headers):
                    fresh.append((cache_as, result_frame(b"{}", value)))
                else:
                    encoded = _json(value)
                    fresh.append((cache_as, encoded))
                    value = orjson.Fragment(encoded)
            _emit(out, item.record, ctx, fields.id, fields.op, "ok", started,
                  batch_size=len(records), result=value, completed=finished,
                  compute_ms=out.compute_ms, submitted=fields.submitted_at)
        else:
            _emit(out, item.record, ctx, fields.id, fields.op, "error", started,
                  batch_size=len(records), error=error, completed=finished,
                  compute_ms=out.compute_ms, submitted=fields.submitted_at)
    if ctx.cache is not None and fresh:
        ctx.cache.put_many(fresh)
    return out


class CrashLoop(Exception):
    """Computing the record killed the worker process every time it was tried."""


def give_up(records: Sequence[RequestRecord], ctx: BatchContext,
            attempts: Sequence[int]) -> BatchOutput:
    """Dead-letter records whose computation killed the worker ``attempts`` times, without
    computing them again; their readable ids get an error result ``crash_loop``."""
    out = BatchOutput()
    now = time.time()
    for record, tried in zip(records, attempts, strict=True):
        exc = CrashLoop(f"the worker process died {tried} times computing this record; "
                        "it is not computed again")
        _reject(out, record, ctx, "compute", exc, now, len(records), code="crash_loop")
    return out


def _compute(valid: Sequence[_Valid]) -> list[tuple[Any, dict[str, str] | None]]:
    """Run each op's batch kernel over its requests; isolate failures per request."""
    values: list[tuple[Any, dict[str, str] | None]] = [(None, None)] * len(valid)
    for name, idx in group_by(valid, lambda v: v.op.name).items():
        op = valid[idx[0]].op
        arrays = [valid[i].request.data for i in idx]
        args = [valid[i].args for i in idx]
        try:
            with np.errstate(all="ignore"):
                batch = op.batch(arrays, args)
            for i, value in zip(idx, batch, strict=True):
                values[i] = (value, None)
        except Exception:
            logger.debug("batch kernel %s failed; computing its %d requests one by one",
                         name, len(idx), exc_info=True)
            for i, array, arg in zip(idx, arrays, args, strict=True):
                values[i] = _compute_one(op, array, arg)
    return values


def _compute_one(op: ops.Op, array: Any, args: ops.OpArgs) -> tuple[Any, dict[str, str] | None]:
    try:
        with np.errstate(all="ignore"):
            return op.reference(array, args), None
    except np.linalg.LinAlgError as exc:
        code = "singular_matrix" if "singular" in str(exc).lower() else "linalg_error"
        return None, {"code": code, "message": str(exc)}
    except Exception as exc:
        return None, {"code": "compute_error", "message": f"{type(exc).__name__}: {exc}"}


def _emit(
    out: BatchOutput,
    record: RequestRecord,
    ctx: BatchContext,
    request_id: str,
    op: str,
    status: str,
    started: float,
    *,
    batch_size: int,
    result: Any = None,
    error: dict[str, str] | None = None,
    completed: float | None = None,
    compute_ms: float = 0.0,
    submitted: float | None = None,
    cached: bool = False,
) -> None:
    limit = ctx.max_result_bytes
    if isinstance(result, orjson.Fragment):
        pass  # already encoded (a cache hit, or encoded once for the cache); size checked below
    elif result is not None and limit is not None and _numbers(result) * 2 > limit:
        # Each JSON number takes at least two bytes: this one cannot fit, skip encoding it.
        status, result, error = "error", None, _too_large(_numbers(result) * 2, limit)
    headers = record.headers
    binary = (status == "ok" and result is not None and not isinstance(result, orjson.Fragment)
              and wants_binary_result(headers))
    enqueued = record.timestamp / 1000.0
    doc = {
        "schema_version": SCHEMA_VERSION,
        "id": request_id,
        "status": status,
        "op": op,
        "result": result if result is None or isinstance(result, orjson.Fragment) or binary
        else json_safe(result),
        "error": error,
        "worker": ctx.worker,
        "batch_size": batch_size,
        "submitted_at": submitted,
        "enqueued_at": enqueued,
        "completed_at": completed if completed is not None else started,
        "queue_ms": max(0.0, (started - enqueued) * 1000.0),
        "compute_ms": compute_ms,
        "cached": cached,
    }
    if binary:
        del doc["result"]
        value = result_frame(orjson.dumps(doc), result)
    else:
        value = orjson.dumps(doc, option=orjson.OPT_SERIALIZE_NUMPY)
    if limit is not None and len(value) > limit:
        # A record the broker would refuse forever would block the partition: answer instead.
        doc.update(status="error", result=None, error=_too_large(len(value), limit))
        status, binary = "error", False
        value = orjson.dumps(doc)
    carried = result_headers(headers) if headers else None
    if binary:
        carried = [*(carried or ()), (CONTENT_TYPE_HEADER, _RESULT_BINARY)]
    out.results.append(ResultRecord(request_id.encode(), value, carried,
                                    reply_partition_of(headers) if headers else None))
    out.statuses[status] = out.statuses.get(status, 0) + 1


def _numbers(value: Any) -> int:
    """How many numbers a result holds (a reduction's float: one, without asking NumPy)."""
    return 1 if isinstance(value, float) else int(np.size(value))


def _cached(hit: bytes, record: RequestRecord) -> Any:
    """A cached result (its JSON, or a frame of its values) as ``_emit`` takes it: values for
    a request that asked for a binary result, JSON for any other."""
    binary = wants_binary_result(record.headers)
    if is_result_frame(hit):
        values = result_array(hit)[1]
        return values if binary else orjson.Fragment(_json(values))
    return np.array(orjson.loads(hit), dtype=np.float64) if binary else orjson.Fragment(hit)


def _json(values: Any) -> bytes:
    """A result's values as JSON ("NaN" and "Infinity" as strings)."""
    return orjson.dumps(json_safe(values), option=orjson.OPT_SERIALIZE_NUMPY)


def _too_large(size: int, limit: int) -> dict[str, str]:
    return {"code": "result_too_large",
            "message": f"the result needs at least {size} bytes; results are limited to "
                       f"{limit} bytes (max_message_bytes)"}


def _reject(
    out: BatchOutput,
    record: RequestRecord,
    ctx: BatchContext,
    stage: str,
    exc: Exception,
    now: float,
    batch_size: int,
    code: str = "invalid_request",
) -> None:
    """Dead-letter a record and, when its id is readable, answer it with an error result."""
    message = _describe(exc)
    request_id = peek_id(record.value, record.key)
    if request_id is not None and not is_request_id(request_id):
        request_id = None
    why = DeadLetterHeaders(
        original_topic=record.topic,
        original_partition=record.partition,
        original_offset=record.offset,
        original_timestamp=record.timestamp,
        consumer_group=ctx.group,
        error_class=type(exc).__name__,
        error_message=message,
        stage=stage,
        request_id=request_id,
        worker=ctx.worker,
    )
    out.dead_letters.append(_dead_letter(record, why, ctx.max_result_bytes))
    if request_id is not None:
        _emit(out, record, ctx, request_id, _peek_op(record.value), "error", now,
              batch_size=batch_size,
              error={"code": code, "message": f"{stage}: {message}"})


def _dead_letter(record: RequestRecord, why: DeadLetterHeaders, limit: int | None) -> DeadLetter:
    """The original key, value and headers plus ``why``; a value that would take the record past
    ``limit`` is cut to fit and its length recorded, so the dead letter can always be written."""
    value = record.value
    headers = list(record.headers) + why.to_headers()
    if limit is not None and value is not None:
        size = len(record.key or b"") + len(value) + sum(len(k) + len(v) for k, v in headers)
        if size > limit:
            cut = why.model_copy(update={"original_value_bytes": len(value)})
            headers = list(record.headers) + cut.to_headers()
            size = len(record.key or b"") + sum(len(k) + len(v) for k, v in headers)
            value = value[: max(0, limit - size)]
    return DeadLetter(record.key, value, headers)


def _describe(exc: Exception) -> str:
    if isinstance(exc, ValidationError):
        return "; ".join(
            f"{'.'.join(str(p) for p in e['loc']) or 'value'}: {e['msg']}" for e in exc.errors()[:5]
        )
    return str(exc)[:1000]


def _peek_op(value: bytes | None) -> str:
    doc = loose_json(value)
    op = doc.get("op") if isinstance(doc, dict) else None
    return op[:64] if isinstance(op, str) else ""
