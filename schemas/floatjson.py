"""A JSON request whose ``data`` is read straight into float64, no Python float per value: a
submit's body or a WebSocket ``submit`` message's ``request`` in the API, a JSON request record
in the worker.

pydantic reads a 300×300 ``matmul`` body (2.1 MB, 180,000 numbers) in about 10 ms, most of it
making 180,000 Python floats that are packed into bytes right after; simdjson reads the same
array into a float64 buffer in about 4 ms. Only the plain case is read here: one JSON object,
each key once, whose only array is a non-empty, flat ``data`` of numbers within float64's
range. Anything else (a ``[`` elsewhere in the value, even inside a string; a repeated key;
``true`` among the numbers; invalid JSON) is left to the full parse, which accepts or refuses
it, and says why, exactly as before. The other fields are returned as plain values for the same
pydantic model to validate.
"""

from __future__ import annotations

import threading
from typing import Any

import numpy as np
import numpy.typing as npt
import simdjson

SMALLEST = 4096
"""Bodies shorter than this are parsed the full way by the API: below it the saving is a few
microseconds of a request that costs it hundreds."""

REUSED_UP_TO = 64 * 1024
"""Values up to this size are parsed by their thread's own parser (a parser grows to the
largest value it read and keeps that memory); larger ones by a parser of their own, whose
set-up is small beside the parse."""

_F64 = np.dtype("<f8")
_local = threading.local()

Array = npt.NDArray[np.float64]


def read(body: bytes | bytearray) -> tuple[dict[str, Any], bytes] | None:
    """A submission's fields but ``data`` and its data as little-endian float64, or None when
    the body is small or not the plain case (see the module's docstring)."""
    if len(body) < SMALLEST:
        return None
    read = read_request(body)
    return None if read is None else (read[0], read[1].tobytes())


def read_request(value: bytes | bytearray) -> tuple[dict[str, Any], Array] | None:
    """A request's fields but ``data`` and its data as a float64 array, or None when the value
    is not the plain case, whatever its size."""
    doc = _parsed(value)
    return None if doc is None else _submission(doc)


def read_message(message: bytes, key: str) -> tuple[dict[str, Any], dict[str, Any], bytes] | None:
    """A message that carries a submission under ``key`` (a WebSocket ``submit``), read the
    same way: the message's other fields, the submission's fields but ``data``, and its data;
    None unless both the message and the submission are the plain case."""
    if len(message) < SMALLEST or b'"%s"' % key.encode() not in message:
        return None  # small, or another kind of message (a long subscribe): not parsed twice
    doc = _parsed(message)
    if doc is None:
        return None
    try:
        keys = list(doc.keys())
        inner = doc[key] if key in keys else None
        if not isinstance(inner, simdjson.Object) or len(set(keys)) != len(keys):
            return None
        outer = {k: _plain(doc[k]) for k in keys if k != key}
    except (ValueError, TypeError, RuntimeError):
        return None
    read = _submission(inner)
    return None if read is None else (outer, read[0], read[1].tobytes())


def _parsed(value: bytes | bytearray) -> simdjson.Object | None:
    if value.find(b"[", value.find(b"[") + 1) >= 0:
        return None  # a second "[": an array besides data, or data nested
    try:
        # A parser's documents die with its next parse: nothing parsed here outlives the call.
        doc = _parser(len(value)).parse(value)
    except (ValueError, RuntimeError):
        return None
    return doc if isinstance(doc, simdjson.Object) else None


def _parser(size: int) -> simdjson.Parser:
    if size > REUSED_UP_TO:
        return simdjson.Parser()
    parser = getattr(_local, "parser", None)
    if parser is None:
        parser = _local.parser = simdjson.Parser()
    return parser


def _submission(doc: simdjson.Object) -> tuple[dict[str, Any], Array] | None:
    try:
        keys = list(doc.keys())
        if "data" not in keys or len(set(keys)) != len(keys):
            return None
        data = doc["data"]
        if not isinstance(data, simdjson.Array) or not len(data):
            return None
        # Always finite: simdjson refuses NaN, Infinity and numbers past float64's range.
        values = np.frombuffer(data.as_buffer(of_type="d"), dtype=np.float64)
        fields = {key: _plain(doc[key]) for key in keys if key != "data"}
    except (ValueError, TypeError, RuntimeError):  # RuntimeError: an integer past 64 bits
        return None
    return fields, values.astype(_F64, copy=False)


def _plain(value: Any) -> Any:
    if isinstance(value, simdjson.Object):
        return value.as_dict()
    if isinstance(value, simdjson.Array):
        return value.as_list()
    return value
