"""Client bodies in, request records out: validate, assign ids, encode. Pure; no I/O.

Every way in (single JSON, JSON array, NDJSON line, WebSocket submit, ``.npy`` rows) ends in a
``Prepared`` record that the worker will accept: the same pydantic contract it applies, the
op's own argument and shape check, and the API's array-length limit.

The hot path avoids re-encoding: when the client sent no id, the record value is the client's
own bytes with ``id`` and ``submitted_at`` spliced in front, which the worker parses exactly as
the API just did.
"""

from __future__ import annotations

import hashlib
import io
import math
import re
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, cast

import numpy as np
import numpy.typing as npt
import orjson
from numpy.lib import format as npy_format
from pydantic import ValidationError

from producer_api.errors import InvalidRequest
from producer_api.models import Submission, SubmissionFields
from schemas import floatjson, ops
from schemas.encoding import (
    BINARY,
    CONTENT_TYPE_HEADER,
    JSON,
    RESULT_BINARY,
    RESULT_TYPE_HEADER,
    float64_bytes,
    frame,
)
from schemas.messages import ID_CHARACTERS, ID_MAX_LENGTH, TENANT_HEADER, is_request_id

JSON_HEADERS = [(CONTENT_TYPE_HEADER, JSON.encode())]
BINARY_HEADERS = [(CONTENT_TYPE_HEADER, BINARY.encode())]
WANTS_BINARY_RESULT = (RESULT_TYPE_HEADER, RESULT_BINARY.encode())
"""The header that asks the worker for a binary result frame."""
ID_PREFIX = re.compile(rf"^[{ID_CHARACTERS}]{{1,100}}$")
_F64 = np.dtype("<f8")
_MAX_FIELD_ERRORS = 20


@dataclass(frozen=True, slots=True)
class Prepared:
    """One request record, ready to publish."""

    id: str
    op: str
    value: bytes
    headers: list[tuple[str, bytes]]
    fingerprint: bytes | None = None

    @property
    def key(self) -> bytes:
        """The record key: the id."""
        return self.id.encode()

    def stamped(self, tenant: str, trace: Sequence[tuple[str, bytes]] = (),
                own: Sequence[tuple[str, bytes]] = ()) -> Prepared:
        """This record stamped with the API's ``own`` headers (reply partition, result type),
        a tenant's header and the submit's trace headers (``producer_api.tracing``), as far as
        there are any; itself for none."""
        if not tenant and not trace and not own:
            return self
        headers = [*self.headers, *own]
        if tenant:
            headers.append((TENANT_HEADER, tenant.encode()))
        # Built directly: dataclasses.replace costs several times more, once per record.
        return Prepared(self.id, self.op, self.value, [*headers, *trace], self.fingerprint)


@dataclass(frozen=True, slots=True)
class Rejected:
    """An item of a batch that could not be prepared."""

    index: int
    error: InvalidRequest

    def describe(self) -> dict[str, Any]:
        """The ``ItemError`` document."""
        first = self.error.fields[0]
        return {"index": self.index, "code": self.error.code, "message": first["message"],
                "field": first["field"]}


def new_id() -> str:
    """A fresh server-assigned id."""
    return uuid.uuid4().hex


def fingerprint(op: str, packed: bytes, args: Mapping[str, Any],
                deadline: float | None) -> bytes:
    """What makes two requests the same: op, data (``packed`` by ``float64_bytes``), args and
    deadline."""
    h = hashlib.blake2b(digest_size=16)
    h.update(orjson.dumps([op, args, deadline], option=orjson.OPT_SORT_KEYS))
    h.update(packed)
    return h.digest()


def from_json(body: bytes, max_values: int, now: float, binary: bool = False,
              mint: Callable[[], str] = new_id) -> Prepared:
    """A request from the raw JSON body of a submit (or one NDJSON line); with ``binary`` its
    record is a binary frame, else JSON. ``mint`` makes the id of a request without one."""
    if binary and (plain := floatjson.read(body)) is not None:
        return from_plain(*plain, max_values, now, mint)
    try:
        sub = Submission.model_validate_json(body)
    except ValidationError as exc:
        raise _invalid(exc) from None
    return _prepare(sub, body, max_values, now, binary, mint)


def from_plain(fields: dict[str, Any], packed: bytes, max_values: int, now: float,
               mint: Callable[[], str] = new_id) -> Prepared:
    """A request read by ``floatjson``: its fields but data, and its data as float64 bytes;
    its record is a binary frame."""
    try:
        # Validated as JSON again (a few fields, not the data): pydantic's JSON mode, as the
        # full parse applies it, not its Python mode, which reads some values otherwise.
        rest = SubmissionFields.model_validate_json(orjson.dumps(fields))
    except ValidationError as exc:
        raise _invalid(exc) from None
    return _prepare(rest, None, max_values, now, True, mint, packed)


@dataclass(frozen=True, slots=True)
class Plain:
    """A JSON array item read by ``floatjson``: its fields but ``data``, and its data as
    float64 bytes."""

    fields: dict[str, Any]
    packed: bytes


def read_item(text: bytes | bytearray) -> Any:
    """A JSON array item's text, as ``jsonarray`` hands it over: ``Plain`` when its data can be
    read straight into float64, else its JSON value (``orjson.JSONDecodeError`` if it is not
    JSON)."""
    plain = floatjson.read(text)
    return Plain(*plain) if plain is not None else orjson.loads(text)


def from_item(item: Any, max_values: int, now: float, binary: bool = False,
              mint: Callable[[], str] = new_id) -> Prepared:
    """A request from a batch item: ``Plain`` (its record a binary frame), or a JSON value."""
    if isinstance(item, Plain):
        return from_plain(item.fields, item.packed, max_values, now, mint)
    return from_object(item, max_values, now, binary=binary, mint=mint)


def from_object(doc: Any, max_values: int, now: float, where: str = "body",
                binary: bool = False, mint: Callable[[], str] = new_id) -> Prepared:
    """A request from an already-parsed JSON value (a batch item, a WebSocket submit)."""
    if not isinstance(doc, dict):
        raise InvalidRequest.of(where, "expected a JSON object")
    try:
        sub = Submission.model_validate(doc)
    except ValidationError as exc:
        raise _invalid(exc) from None
    return _prepare(sub, None, max_values, now, binary, mint)


def from_binary(body: bytes, op_name: str, args: Mapping[str, Any], request_id: str | None,
                deadline: float | None, max_values: int, now: float, npy: bool = False,
                mint: Callable[[], str] = new_id) -> Prepared:
    """A request from a binary body: raw little-endian float64 values, or (``npy``) a
    ``.npy`` array read row-major; op, args, id and deadline come beside it (the query).

    The values become the record's frame as they are: nothing is parsed into Python floats.
    """
    if npy:
        packed = _load_npy(body).tobytes()
    else:
        if not body or len(body) % 8:
            raise InvalidRequest.of("body", f"{len(body)} bytes is not a whole number of "
                                    "float64 values (8 bytes each, little-endian)")
        packed = bytes(body)
    size = len(packed) // 8
    if size > max_values:
        raise InvalidRequest.of("data", f"has {size} values; the limit is {max_values}")
    if not np.isfinite(np.frombuffer(packed, dtype=_F64)).all():
        raise InvalidRequest.of("data", "contains NaN or Infinity")
    if request_id is not None and not is_request_id(request_id):
        raise InvalidRequest.of("query.id",
                                f"1-{ID_MAX_LENGTH} characters of A-Z a-z 0-9 . _ : @ -")
    if deadline is not None and not math.isfinite(deadline):
        raise InvalidRequest.of("query.deadline", "must be a finite UNIX time")
    try:
        ops.get(op_name).parse(size, args)
    except ops.OpInputError as exc:
        raise InvalidRequest.of(exc.field, exc.message) from None
    print_ = None if request_id is None else fingerprint(op_name, packed, args, deadline)
    rid = request_id or mint()
    meta: dict[str, Any] = {"id": rid, "op": op_name}
    if args:
        meta["args"] = dict(args)
    if deadline is not None:
        meta["deadline"] = deadline
    meta["submitted_at"] = now
    return Prepared(rid, op_name, frame(orjson.dumps(meta), packed), BINARY_HEADERS, print_)


def parse_args(raw: str | None, field: str = "args") -> dict[str, Any]:
    """An op's args given as a JSON object in the query (``?args={"ddof": 1}``)."""
    if raw is None:
        return {}
    try:
        value = orjson.loads(raw)
    except orjson.JSONDecodeError:
        value = None
    if not isinstance(value, dict):
        raise InvalidRequest.of(field, "expected a JSON object")
    return value


def _prepare(sub: Submission | SubmissionFields, raw: bytes | None, max_values: int,
             now: float, binary: bool = False, mint: Callable[[], str] = new_id,
             packed: bytes | None = None) -> Prepared:
    """The record of a validated submission; ``packed``: its data already as float64 (then
    ``sub`` has none and the record is binary)."""
    data = sub.data if isinstance(sub, Submission) else None
    size = len(data) if data is not None else len(packed or b"") // _F64.itemsize
    if size > max_values:
        raise InvalidRequest.of("data", f"has {size} values; the limit is {max_values}")
    try:
        ops.get(sub.op).parse(size, sub.args)
    except ops.OpInputError as exc:
        raise InvalidRequest.of(exc.field, exc.message) from None
    given = sub.model_fields_set
    # Packed once for both the fingerprint and the frame.
    if packed is None:
        packed = float64_bytes(data) if data and (binary or sub.id is not None) else b""
    if sub.id is None:
        request_id, print_ = mint(), None
    else:
        request_id = sub.id
        print_ = fingerprint(sub.op, packed, sub.args, sub.deadline)
    submitted = sub.submitted_at if "submitted_at" in given else now
    if binary:
        meta = orjson.dumps(_fields(request_id, sub, submitted))
        return Prepared(request_id, sub.op, frame(meta, packed), BINARY_HEADERS, print_)
    value = None
    if raw is not None and not ("id" in given and sub.id is None):
        value = _splice(raw, None if "id" in given else request_id,
                        None if "submitted_at" in given else now)
    if value is None:
        value = orjson.dumps({**_fields(request_id, sub, submitted), "data": data})
    return Prepared(request_id, sub.op, value, JSON_HEADERS, print_)


def _fields(request_id: str, sub: Submission | SubmissionFields,
            submitted: float | None) -> dict[str, Any]:
    """Every request field but ``data``, defaults left out (as the worker reads them)."""
    doc: dict[str, Any] = {"id": request_id, "op": sub.op}
    if sub.args:
        doc["args"] = sub.args
    if sub.deadline is not None:
        doc["deadline"] = sub.deadline
    if submitted is not None:
        doc["submitted_at"] = submitted
    return doc


def _splice(raw: bytes, request_id: str | None, now: float | None) -> bytes | None:
    """The client's JSON object with ``id``/``submitted_at`` added in front (None: can't)."""
    extra: dict[str, Any] = {}
    if request_id is not None:
        extra["id"] = request_id
    if now is not None:
        extra["submitted_at"] = now
    if not extra:
        return raw
    body = raw.lstrip()
    if not body.startswith(b"{"):
        return None
    return orjson.dumps(extra)[:-1] + b"," + body[1:]


def from_npy(body: bytes | bytearray, op_name: str, args: Mapping[str, Any], id_prefix: str | None,
             max_values: int, now: float, max_rows: int | None = None
             ) -> tuple[Iterator[Prepared | Rejected], str]:
    """One binary record per row of an ``.npy`` array (a 1-D array is one row).

    Returns the items in row order, each encoded as it is drawn (a large body is not encoded in
    one go), and the id prefix (ids are ``<prefix>-<row>``). The whole body is checked first.
    With a client prefix the rows carry fingerprints, so re-posting the same file is idempotent.
    """
    matrix = _load_npy(body)
    rows, cols = matrix.shape
    if cols > max_values:
        raise InvalidRequest.of("data", f"rows have {cols} values; the limit is {max_values}")
    if max_rows is not None and rows > max_rows:
        raise InvalidRequest.of("body", f"{rows} rows; this tenant's limit is {max_rows} per "
                                "batch (tenant_max_batch_items)")
    try:
        ops.get(op_name).parse(cols, args)
    except ops.OpInputError as exc:
        raise InvalidRequest.of(exc.field, exc.message) from None
    if id_prefix is not None and not ID_PREFIX.match(id_prefix):
        raise InvalidRequest.of("id_prefix", "1-100 characters of A-Z a-z 0-9 . _ : @ -")
    prefix = id_prefix or new_id()
    finite = cast("npt.NDArray[np.bool_]", np.isfinite(matrix).all(axis=1))
    shared: dict[str, Any] = {"op": op_name, "args": dict(args)} if args else {"op": op_name}
    shared["submitted_at"] = now

    def rows_of() -> Iterator[Prepared | Rejected]:
        for i in range(rows):
            if not finite[i]:
                yield Rejected(i, InvalidRequest.of("data", "row contains NaN or Infinity"))
                continue
            row = matrix[i]
            request_id = f"{prefix}-{i}"
            meta = orjson.dumps({"id": request_id, **shared})
            packed = row.tobytes()  # a row of a C-contiguous little-endian float64 matrix
            print_ = fingerprint(op_name, packed, args, None) if id_prefix is not None else None
            yield Prepared(request_id, op_name, frame(meta, packed), BINARY_HEADERS, print_)

    return rows_of(), prefix


def _load_npy(body: bytes | bytearray) -> npt.NDArray[np.float64]:
    """A 2-D float64 view of an ``.npy`` body, checked before any allocation."""
    stream = io.BytesIO(body)
    try:
        version = npy_format.read_magic(stream)
        if version == (1, 0):
            shape, fortran, dtype = npy_format.read_array_header_1_0(stream)
        elif version == (2, 0):
            shape, fortran, dtype = npy_format.read_array_header_2_0(stream)
        else:
            raise ValueError(f"unsupported .npy version {version}; save with version 1.0 or 2.0")
    except ValueError as exc:
        raise InvalidRequest.of("body", f"not a readable .npy array: {exc}") from None
    if dtype.hasobject or dtype.kind not in "fiu" or dtype.fields is not None:
        raise InvalidRequest.of("body", f"dtype {dtype} is not an integer or float type")
    if len(shape) not in (1, 2) or 0 in shape:
        raise InvalidRequest.of("body", f"shape {shape}: expected a non-empty 1-D or 2-D array")
    count = int(np.prod(shape))
    offset = stream.tell()
    if len(body) - offset != count * dtype.itemsize:
        raise InvalidRequest.of(
            "body", f"header promises {count * dtype.itemsize} data bytes, body has "
            f"{len(body) - offset}")
    flat = np.frombuffer(body, dtype=dtype, count=count, offset=offset)
    matrix = flat.reshape(shape, order="F" if fortran else "C")
    if matrix.ndim == 1:
        matrix = matrix.reshape(1, -1)
    return np.ascontiguousarray(matrix, dtype=_F64)


def _invalid(exc: ValidationError) -> InvalidRequest:
    fields = []
    for err in exc.errors(include_url=False)[:_MAX_FIELD_ERRORS]:
        loc = ".".join(str(p) for p in err["loc"])
        if err["type"] == "json_invalid":
            loc = "body"
        fields.append({"field": loc or "body", "message": err["msg"]})
    return InvalidRequest(fields)
