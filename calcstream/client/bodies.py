"""Request bodies for the client: one submit, and a ``map`` split into batch calls. Pure.

``plan_batches`` picks the body per input: equal-length arrays become ``.npy`` bodies (no
number is written as text), others JSON arrays; each call stays within the server's limits
and within ``max_items``, and every item gets an id chosen here, so any call can be retried.
"""

from __future__ import annotations

import io
import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, fields
from typing import Any, TypeGuard

import numpy as np
import numpy.typing as npt
import orjson

from calcstream.client.errors import InvalidRequest

ArrayLike = Sequence[float] | npt.NDArray[Any]
"""The data of one request: a flat sequence of numbers (an array is flattened, row-major)."""

JSON = "application/json"
OCTETS = "application/octet-stream"
NDJSON = "application/x-ndjson"
NPY = "application/x-npy"
_MiB = 1024 * 1024


@dataclass(frozen=True, slots=True)
class Limits:
    """What the API accepts (``GET /v1/limits``; the server defaults if it does not say)."""

    max_body_bytes: int = 4 * _MiB
    max_batch_bytes: int = 64 * _MiB
    max_array_length: int = 100_000
    max_batch_count: int = 10_000
    max_wait_s: float = 30.0
    ws_max_message_bytes: int = 4 * _MiB
    ws_max_subscriptions: int = 100_000

    @classmethod
    def from_document(cls, doc: Mapping[str, Any]) -> Limits:
        """The limits in an API answer; unknown keys are ignored, missing ones default."""
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in doc.items() if k in known})


def new_id() -> str:
    """A fresh request id."""
    return uuid.uuid4().hex


def _values(data: ArrayLike) -> Any:
    """``data`` in a form orjson writes as a flat JSON array of numbers."""
    if isinstance(data, np.ndarray):
        return np.ascontiguousarray(data, dtype=np.float64).reshape(-1)
    if isinstance(data, (list, tuple)):
        return data
    return list(data)


def request_body(request_id: str, op: str, data: ArrayLike, args: Mapping[str, Any] | None,
                 deadline: float | None) -> bytes:
    """The JSON body of ``POST /v1/calculations``."""
    doc: dict[str, Any] = {"id": request_id, "op": op, "data": _values(data)}
    if args:
        doc["args"] = dict(args)
    if deadline is not None:
        doc["deadline"] = deadline
    return orjson.dumps(doc, option=orjson.OPT_SERIALIZE_NUMPY)


def binary_request(request_id: str, op: str, data: npt.NDArray[Any],
                   args: Mapping[str, Any] | None, deadline: float | None
                   ) -> tuple[bytes, dict[str, str]]:
    """A NumPy array's ``POST /v1/calculations`` as raw little-endian float64 and its query:
    no number is written as text, and the API parses none."""
    params = {"op": op, "id": request_id}
    if args:
        params["args"] = orjson.dumps(dict(args)).decode()
    if deadline is not None:
        params["deadline"] = repr(float(deadline))
    return np.ascontiguousarray(data, dtype="<f8").tobytes(), params


def is_numeric_array(data: ArrayLike) -> TypeGuard[npt.NDArray[Any]]:
    """``data`` is a NumPy array of numbers (sent as binary)."""
    return isinstance(data, np.ndarray) and data.dtype.kind in "fiub"


@dataclass(frozen=True, slots=True)
class BatchCall:
    """One batch call of a ``map``: where its items start, how many, and its body."""

    first: int
    count: int
    content_type: str
    params: dict[str, str]
    parts: list[bytes] | None = None
    rows: npt.NDArray[np.float64] | None = None

    def body(self) -> bytes:
        """The request body, built now (a ``.npy`` file, or a JSON array)."""
        if self.rows is not None:
            buffer = io.BytesIO()
            np.lib.format.write_array(buffer, self.rows, allow_pickle=False)
            return buffer.getvalue()
        assert self.parts is not None
        return b"[" + b",".join(self.parts) + b"]"


def plan_batches(op: str, arrays: Iterable[ArrayLike] | npt.NDArray[Any], args: dict[str, Any],
          limits: Limits, max_items: int) -> tuple[list[str], list[BatchCall]]:
    """The ids (in input order) and the batch calls that submit them, ``max_items`` at most
    per call and within the server's limits."""
    vectors = _vectors(arrays)
    if not vectors:
        return [], []
    width = len(vectors[0])
    matrix = np.stack(vectors) if width and all(len(v) == width for v in vectors) else None
    if matrix is not None:
        finite = np.isfinite(matrix).all(axis=1)
    else:
        finite = np.array([np.isfinite(v).all() for v in vectors])
    if not finite.all():
        bad = np.flatnonzero(~finite)
        raise InvalidRequest(
            f"{len(bad)} of the arrays contain NaN or Infinity (the first: item {bad[0]})",
            fields=[{"field": f"{i}.data", "message": "contains NaN or Infinity"}
                    for i in bad[:20]])
    base = new_id()
    if matrix is not None:
        step = max(1, min(max_items, (limits.max_batch_bytes - 1024) // (width * 8)))
        ids: list[str] = []
        posts = []
        for chunk, start in enumerate(range(0, len(matrix), step)):
            rows = matrix[start:start + step]
            prefix = f"{base}.{chunk}"
            ids.extend(f"{prefix}-{i}" for i in range(len(rows)))
            params = {"op": op, "id_prefix": prefix, "args": orjson.dumps(args).decode()}
            posts.append(BatchCall(start, len(rows), NPY, params, rows=rows))
        return ids, posts
    ids = [f"{base}-{i}" for i in range(len(vectors))]
    parts = [orjson.dumps({"id": rid, "op": op, "data": v, "args": args},
                          option=orjson.OPT_SERIALIZE_NUMPY)
             for rid, v in zip(ids, vectors, strict=True)]
    posts = []
    most = min(max_items, limits.max_batch_count)
    start, size = 0, 2
    for i, part in enumerate(parts):
        count = i - start
        if count and (count >= most or size + len(part) + 1 > limits.max_batch_bytes):
            posts.append(BatchCall(start, count, JSON, {}, parts=parts[start:i]))
            start, size = i, 2
        size += len(part) + 1
    posts.append(BatchCall(start, len(parts) - start, JSON, {}, parts=parts[start:]))
    return ids, posts


def _vectors(arrays: Iterable[ArrayLike] | npt.NDArray[Any]) -> list[npt.NDArray[np.float64]]:
    if isinstance(arrays, np.ndarray) and arrays.ndim == 2:
        return list(np.ascontiguousarray(arrays, dtype=np.float64))
    vectors = []
    for i, data in enumerate(arrays):
        try:
            vectors.append(np.asarray(data, dtype=np.float64).reshape(-1))
        except (TypeError, ValueError) as exc:
            raise InvalidRequest(f"item {i} is not an array of numbers: {exc}",
                                 fields=[{"field": f"{i}.data", "message": str(exc)}]) from None
    return vectors
