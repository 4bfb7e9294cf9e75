"""How requests and results are laid out in record values.

A request record carries a ``content-type`` header. Without one, or with ``application/json``,
the value is a JSON ``CalcRequest``. With ``application/vnd.calcstream.request+binary`` the value
is a compact binary frame, so large arrays skip JSON entirely::

    offset 0   uint32, little-endian: length L of the metadata
    offset 4   L bytes: JSON object with every CalcRequest field except ``data``
    offset 4+L the data, raw little-endian float64 (8 bytes per value, row-major)

A result record is a JSON ``CalcResult`` value, unless its request asked for a binary result
(record header ``result-type: application/vnd.calcstream.result+binary``) and it is an ``ok``
numeric result: then the value is a binary frame, with ``content-type`` naming it::

    offset 0   4 bytes: the magic b"\\x93CSR" (no JSON document starts with byte 0x93)
    offset 4   uint32, little-endian: length L of the metadata
    offset 8   L bytes: JSON object with every CalcResult field except ``result``, plus
               ``shape``, the result's dimensions (``[]`` for a number)
    offset 8+L the result, raw little-endian float64, row-major; NaN and infinities as they are
"""

from __future__ import annotations

import math
import struct
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, TypeGuard

import numpy as np
import numpy.typing as npt
import orjson
from pydantic import TypeAdapter, ValidationError
from pydantic_core import from_json

from schemas import floatjson
from schemas.messages import CalcRequest, RequestFields

CONTENT_TYPE_HEADER = "content-type"
JSON = "application/json"
BINARY = "application/vnd.calcstream.request+binary"
CONTENT_TYPES = (JSON, BINARY)
RESULT_BINARY = "application/vnd.calcstream.result+binary"
RESULT_TYPE_HEADER = "result-type"
"""The request header that asks for the result's encoding: ``RESULT_BINARY``, or JSON when
absent (or anything else)."""
RESULT_MAGIC = b"\x93CSR"
_RESULT_HEAD = struct.Struct("<4sI")
_NON_FINITE = {math.inf: "Infinity", -math.inf: "-Infinity"}

_LENGTH = struct.Struct("<I")
_PLAIN_FROM = 512
"""``decode_requests`` reads JSON values from this size on (about 25 numbers) the plain way;
below it the full parse is as fast."""
_FIELDS = TypeAdapter(list[RequestFields])
_F64 = np.dtype("<f8")

Array = npt.NDArray[np.float64]


class DecodeError(ValueError):
    """The value is not a request in the content type it claims (bad JSON, bad framing)."""


@dataclass(frozen=True, slots=True)
class DecodedRequest:
    """A validated request with its data as a float64 array."""

    fields: RequestFields
    data: Array


def encode_json(request: CalcRequest) -> bytes:
    """JSON value of a request record."""
    return request.model_dump_json(exclude_defaults=True).encode()


def encode_binary(fields: RequestFields, data: npt.ArrayLike) -> bytes:
    """Binary value of a request record (header ``content-type: BINARY``)."""
    # ``include``: a CalcRequest is a RequestFields too, and its data list must stay out.
    meta = fields.model_dump_json(include=set(RequestFields.model_fields),
                                  exclude_defaults=True).encode()
    return frame(meta, float64_bytes(data))


def frame(meta: bytes, packed: bytes) -> bytes:
    """A binary frame from its metadata (JSON bytes) and its packed data (``float64_bytes``)."""
    return _LENGTH.pack(len(meta)) + meta + packed


def float64_bytes(data: npt.ArrayLike) -> bytes:
    """``data`` as raw little-endian float64 values, row-major: a frame's array part."""
    if isinstance(data, list):
        # A flat list of numbers (what a parsed JSON body holds) packs 2.5x faster with
        # struct than through a NumPy array; anything else is left to NumPy.
        try:
            return struct.pack(f"<{len(data)}d", *data)
        except struct.error:
            pass
    return np.ascontiguousarray(data, dtype=_F64).tobytes()


def content_type(headers: object) -> str:
    """The request content type named by record headers (JSON when absent)."""
    if headers:
        for key, value in headers:  # type: ignore[attr-defined]
            if key.lower() == CONTENT_TYPE_HEADER:
                # Kafka header values may be null; a null content-type names no known type.
                return bytes(value or b"").decode("ascii", "replace").split(";")[0].strip().lower()
    return JSON


def decode_request(value: bytes | None, ctype: str = JSON) -> DecodedRequest:
    """Parse and validate a request value.

    Raises ``DecodeError`` when the bytes are not in the claimed format and pydantic's
    ``ValidationError`` when they are but break the contract.
    """
    if value is None:
        raise DecodeError("record has no value")
    if ctype == JSON:
        try:
            request = CalcRequest.model_validate_json(value)
        except ValidationError as exc:
            if any(e["type"] == "json_invalid" for e in exc.errors()):
                raise DecodeError(f"not valid JSON: {exc.errors()[0]['msg']}") from None
            raise
        # A CalcRequest is a RequestFields; its data list stays with it, unused from here on.
        return DecodedRequest(request, np.frombuffer(float64_bytes(request.data), dtype=_F64))
    if ctype == BINARY:
        return _decode_binary(value)
    raise DecodeError(f"unknown content-type {ctype!r}; expected one of {CONTENT_TYPES}")


def decode_requests(values: Sequence[tuple[bytes | None, str]]
                    ) -> list[DecodedRequest | ValueError]:
    """``decode_request`` of each (value, content type): its request, or the error it raises.

    The same outcome, sooner for JSON values of many numbers: where a value is ``floatjson``'s
    plain case its data is read straight into float64, and the fields of all such values are
    validated in one call, in pydantic's JSON mode as the full parse validates them. If any of
    those fields break the contract, each value is decoded on its own, so that the full parse
    says which and why.
    """
    out: list[DecodedRequest | ValueError | None] = [None] * len(values)
    at: list[int] = []
    fields: list[dict[str, Any]] = []
    data: list[Array] = []
    for i, (value, ctype) in enumerate(values):
        if (ctype == JSON and value is not None and len(value) >= _PLAIN_FROM
                and (plain := floatjson.read_request(value)) is not None):
            at.append(i)
            fields.append(plain[0])
            data.append(plain[1])
    if at:
        try:
            valid = _FIELDS.validate_json(orjson.dumps(fields))
        except (ValidationError, orjson.JSONEncodeError):
            pass
        else:
            for i, each, array in zip(at, valid, data, strict=True):
                out[i] = DecodedRequest(each, array)
    for i, (value, ctype) in enumerate(values):
        if out[i] is None:
            try:
                out[i] = decode_request(value, ctype)
            except ValueError as exc:  # DecodeError, ValidationError
                out[i] = exc
    return out  # type: ignore[return-value]  # every slot filled above


def _decode_binary(value: bytes) -> DecodedRequest:
    if len(value) < _LENGTH.size:
        raise DecodeError("binary request shorter than its length prefix")
    (length,) = _LENGTH.unpack_from(value)
    start = _LENGTH.size + length
    if start > len(value):
        raise DecodeError(f"metadata length {length} runs past the end of the value")
    body = len(value) - start
    if body == 0 or body % _F64.itemsize:
        raise DecodeError(f"array part is {body} bytes; expected a positive multiple of 8")
    try:
        fields = RequestFields.model_validate_json(value[_LENGTH.size : start])
    except ValidationError as exc:
        if any(e["type"] == "json_invalid" for e in exc.errors()):
            raise DecodeError(f"metadata is not valid JSON: {exc.errors()[0]['msg']}") from None
        raise
    data = np.frombuffer(value, dtype=_F64, offset=start)
    finite = np.isfinite(data)
    if not finite.all():
        # The same error the JSON form gets for a NaN: the contract's, not the framing's.
        at = int(np.argmin(finite))
        raise ValidationError.from_exception_data(CalcRequest.__name__, [
            {"type": "finite_number", "loc": ("data", at), "input": float(data[at])}
        ])
    return DecodedRequest(fields, data)


def peek_id(value: bytes | None, key: bytes | None) -> str | None:
    """Best-effort request id of a record that failed to decode or validate."""
    if value:
        doc = loose_json(value)
        if isinstance(doc, dict) and isinstance(doc.get("id"), str) and doc["id"]:
            return str(doc["id"])[:128]
    if key:
        try:
            return key.decode()[:128] or None
        except UnicodeDecodeError:
            return None
    return None


def loose_json(value: bytes | None) -> object:
    """``value`` parsed as leniently as ``decode_request`` parses it (NaN allowed), else None."""
    try:
        return from_json(value or b"")
    except ValueError:
        return None


def wants_binary_result(headers: object) -> bool:
    """Whether a request's record headers ask for a binary result (``RESULT_TYPE_HEADER``)."""
    if headers:
        for key, value in headers:  # type: ignore[attr-defined]
            if key.lower() == RESULT_TYPE_HEADER:
                return bytes(value or b"").strip().lower() == RESULT_BINARY.encode()
    return False


def json_safe(value: Any) -> Any:
    """A result value orjson can write: finite floats, arrays, or "NaN"/"Infinity" strings."""
    if isinstance(value, np.ndarray):
        if value.ndim == 0:
            return json_safe(float(value))
        if np.isfinite(value).all():
            return value
        return [json_safe(v) for v in value.tolist()] if value.ndim == 1 else [
            json_safe(row) for row in value
        ]
    if isinstance(value, list):
        return [json_safe(v) for v in value]
    number = float(value)
    if math.isfinite(number):
        return number
    return "NaN" if math.isnan(number) else _NON_FINITE[number]


def result_frame(meta: bytes, result: npt.ArrayLike) -> bytes:
    """A binary result value: ``meta`` (JSON object bytes ending in ``}``, every CalcResult field
    but ``result``) gains the result's ``shape``, and the values follow as float64."""
    array = np.asarray(result, dtype=_F64)  # tobytes() below writes it row-major
    shape = b',"shape":[%s]}' % b",".join(b"%d" % n for n in array.shape)
    meta = (meta[:-1] + shape) if meta != b"{}" else b"{" + shape[1:]
    return _RESULT_HEAD.pack(RESULT_MAGIC, len(meta)) + meta + array.tobytes()


def is_result_frame(value: bytes | None) -> TypeGuard[bytes]:
    """Whether a result value is a binary frame (else it is meant to be JSON)."""
    return value is not None and value[:4] == RESULT_MAGIC


def result_meta(value: bytes) -> tuple[dict[str, Any], int]:
    """A binary result's metadata (with ``shape``) and where its values start; ``DecodeError``
    unless the frame is whole: magic, metadata, a shape of non-negative integers, and exactly
    the values the shape needs."""
    if len(value) < _RESULT_HEAD.size or value[:4] != RESULT_MAGIC:
        raise DecodeError("not a binary result: no magic and length prefix")
    _, length = _RESULT_HEAD.unpack_from(value)
    start = _RESULT_HEAD.size + length
    if start > len(value):
        raise DecodeError(f"metadata length {length} runs past the end of the value")
    try:
        meta = orjson.loads(value[_RESULT_HEAD.size:start])
    except orjson.JSONDecodeError as exc:
        raise DecodeError(f"binary result metadata is not valid JSON: {exc}") from None
    if not isinstance(meta, dict):
        raise DecodeError("binary result metadata is not a JSON object")
    shape = meta.get("shape")
    if not isinstance(shape, list) or not all(type(n) is int and n >= 0 for n in shape):
        raise DecodeError("binary result metadata needs shape, a list of non-negative integers")
    needed = math.prod(shape) * _F64.itemsize
    if len(value) - start != needed:
        raise DecodeError(f"binary result of shape {shape} needs {needed} bytes of values; "
                          f"it has {len(value) - start}")
    return meta, start


def result_array(value: bytes) -> tuple[dict[str, Any], Array]:
    """A binary result's metadata and values (a read-only view of ``value``), as
    ``result_meta`` checks them."""
    meta, start = result_meta(value)
    data = np.frombuffer(value, dtype=_F64, offset=start).reshape(meta["shape"])
    return meta, data


def result_to_json(value: bytes) -> bytes:
    """The JSON CalcResult document of a binary result, its fields in the order the worker
    writes a JSON result's (``result`` after ``op``)."""
    meta, data = result_array(value)
    del meta["shape"]
    doc: dict[str, Any] = {}
    for key, field in meta.items():
        doc[key] = field
        if key == "op":
            doc["result"] = None  # its place; filled below
    doc["result"] = json_safe(data)
    return orjson.dumps(doc, option=orjson.OPT_SERIALIZE_NUMPY)


def result_from_json(document: dict[str, Any]) -> Array | None:
    """The values of a JSON CalcResult's ``result`` as float64 (its "NaN" and "Infinity"
    strings read back), or None when it is not an ``ok`` number or rectangular array."""
    result = document.get("result")
    if result is None or document.get("status") != "ok" or isinstance(result, bool):
        return None
    try:
        return np.array(result, dtype=_F64)
    except (TypeError, ValueError):
        return None
