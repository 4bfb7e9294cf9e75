"""Files of requests: NDJSON (one request per line), CSV and ``.npy`` (one row per request).

Each source is read lazily and yields, per line or row, either an encoded ``Outgoing`` request or
a ``Rejected`` note saying why that line does not make one, so a bad line among a million costs a
message, not the run. Requests are validated here exactly as the worker will (the contract models
and the op's own ``parse``), so what is sent is answered rather than dead-lettered.
"""

from __future__ import annotations

import csv
import math
import time
import uuid
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Protocol

import numpy as np
import numpy.typing as npt
import orjson
from pydantic import ValidationError

from calcstream.cli.errors import InputError
from schemas import ops
from schemas.encoding import BINARY, CONTENT_TYPE_HEADER, JSON, encode_binary, encode_json
from schemas.messages import CalcRequest, RequestFields

Format = Literal["ndjson", "csv", "npy"]
FORMATS: tuple[Format, ...] = ("ndjson", "csv", "npy")
_SUFFIXES: dict[str, Format] = {
    ".ndjson": "ndjson", ".jsonl": "ndjson", ".json": "ndjson", ".csv": "csv", ".npy": "npy",
}


@dataclass(frozen=True, slots=True)
class Outgoing:
    """One encoded request, ready for the request topic (the key is its id)."""

    id: str
    value: bytes
    content_type: str = JSON

    def headers(self) -> list[tuple[str, bytes]] | None:
        """Record headers: the content type, for binary frames only (JSON is the default)."""
        if self.content_type == JSON:
            return None
        return [(CONTENT_TYPE_HEADER, self.content_type.encode())]


@dataclass(frozen=True, slots=True)
class Rejected:
    """A line or row that does not make a valid request."""

    where: str
    reason: str


class Source(Protocol):
    """A file of requests."""

    path: Path
    total: int
    """Requests expected (lines or rows; an estimate until read, blank lines included)."""

    def __iter__(self) -> Iterator[Outgoing | Rejected]: ...


def open_source(path: Path, fmt: Format | None = None, *, op: str | None = None,
                args: Mapping[str, Any] | None = None, id_prefix: str | None = None) -> Source:
    """The source for ``path``; the format comes from the suffix unless ``fmt`` names it."""
    if fmt is None:
        fmt = _SUFFIXES.get(path.suffix.lower())
        if fmt is None:
            raise InputError(f"cannot tell the format of {path} from its suffix; pass --format "
                             f"({', '.join(FORMATS)})")
    if not path.is_file():
        raise InputError(f"{path}: no such file")
    ids = IdMaker(id_prefix)
    try:
        if fmt == "ndjson":
            return NdjsonSource(path, ids, op, dict(args or {}))
        if op is None:
            raise InputError(f"--op is required for {fmt} input (`calcstream ops` lists them)")
        checker = _FixedOp(op, dict(args or {}))
        if fmt == "csv":
            return CsvSource(path, ids, checker)
        return NpySource(path, ids, checker)
    except OSError as exc:
        raise InputError(f"cannot read {path}: {exc}") from None


class IdMaker:
    """Ids for requests that have none: ``<prefix>-<line or row number>``."""

    def __init__(self, prefix: str | None = None) -> None:
        self.prefix = prefix or uuid.uuid4().hex[:8]
        try:
            RequestFields(id=f"{self.prefix}-1", op="x")
        except ValidationError:
            raise InputError(f"--id-prefix {self.prefix!r}: ids may only use A-Z a-z 0-9 . _ : "
                             "@ - and be at most 128 characters") from None

    def __call__(self, number: int) -> str:
        return f"{self.prefix}-{number}"


class _FixedOp:
    """One op and one set of args for every row; the size check is cached per row length."""

    def __init__(self, name: str, args: dict[str, Any]) -> None:
        try:
            self.op = ops.get(name)
            self.op.args.model_validate(args)
        except ops.OpInputError as exc:
            raise InputError(str(exc)) from None
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(str(p) for p in ("args", *first["loc"]))
            raise InputError(f"{where}: {first['msg']} (from --args)") from None
        self.name = name
        self.args = args
        self._sizes: dict[int, str | None] = {}

    def problem(self, size: int) -> str | None:
        """Why ``size`` values do not fit the op, or None."""
        if size not in self._sizes:
            try:
                self.op.parse(size, self.args)
                self._sizes[size] = None
            except ops.OpInputError as exc:
                self._sizes[size] = str(exc)
        return self._sizes[size]


def _count_lines(path: Path) -> int:
    count = 0
    last = b"\n"
    with path.open("rb") as f:
        while chunk := f.read(1 << 20):
            count += chunk.count(b"\n")
            last = chunk[-1:]
    return count + (last != b"\n")


def _reason(exc: ValidationError) -> str:
    first = exc.errors()[0]
    where = ".".join(str(p) for p in first["loc"])
    return f"{where}: {first['msg']}" if where else first["msg"]


class NdjsonSource:
    """One JSON ``CalcRequest`` per line; ``id`` may be left out, and ``op``/``args`` too when
    ``--op``/``--args`` give defaults."""

    def __init__(self, path: Path, ids: IdMaker, op: str | None, args: dict[str, Any]) -> None:
        self.path = path
        self.total = _count_lines(path)
        self._ids = ids
        self._op = op
        self._args = args

    def __iter__(self) -> Iterator[Outgoing | Rejected]:
        with self.path.open("rb") as f:
            for number, line in enumerate(f, start=1):
                if line.strip():
                    yield self._parse(number, line)

    def _parse(self, number: int, line: bytes) -> Outgoing | Rejected:
        where = f"line {number}"
        try:
            doc = orjson.loads(line)
        except orjson.JSONDecodeError as exc:
            return Rejected(where, f"not JSON: {exc}")
        if not isinstance(doc, dict):
            return Rejected(where, "not a JSON object")
        doc.setdefault("id", self._ids(number))
        if self._op is not None:
            doc.setdefault("op", self._op)
        if self._args:
            doc.setdefault("args", self._args)
        doc.setdefault("submitted_at", time.time())
        try:
            request = CalcRequest.model_validate(doc)
            ops.get(request.op).parse(len(request.data), request.args)
        except ValidationError as exc:
            return Rejected(where, _reason(exc))
        except ops.OpInputError as exc:
            return Rejected(where, str(exc))
        return Outgoing(request.id, encode_json(request))


class CsvSource:
    """One request per row of numbers; a first row without any number is a header."""

    def __init__(self, path: Path, ids: IdMaker, op: _FixedOp) -> None:
        self.path = path
        self.total = _count_lines(path)
        self._ids = ids
        self._op = op

    def __iter__(self) -> Iterator[Outgoing | Rejected]:
        with self.path.open(newline="") as f:
            reader = csv.reader(f)
            first = True
            for row in reader:
                cells = [c.strip() for c in row]
                if not any(cells):
                    continue
                number = reader.line_num
                values, bad = _floats(cells)
                if first:
                    first = False
                    if bad is not None and not values:
                        self.total -= 1
                        continue
                if bad is not None:
                    yield Rejected(f"row {number}", f"not a number: {bad!r}")
                    continue
                yield self._request(number, values)

    def _request(self, number: int, values: list[float]) -> Outgoing | Rejected:
        where = f"row {number}"
        if not all(math.isfinite(v) for v in values):
            return Rejected(where, "data contains NaN or Infinity")
        if problem := self._op.problem(len(values)):
            return Rejected(where, problem)
        request = CalcRequest.model_construct(
            id=self._ids(number), op=self._op.name, args=self._op.args, data=values,
            submitted_at=time.time(),
        )
        return Outgoing(request.id, encode_json(request))


def _floats(cells: list[str]) -> tuple[list[float], str | None]:
    values: list[float] = []
    bad: str | None = None
    for cell in cells:
        if not cell:
            continue
        try:
            values.append(float(cell))
        except ValueError:
            bad = bad if bad is not None else cell
    return values, bad


class NpySource:
    """A 2-D ``.npy`` array, one row per request, sent as binary frames (no JSON for the data)."""

    def __init__(self, path: Path, ids: IdMaker, op: _FixedOp) -> None:
        self.path = path
        try:
            self._array = np.load(path, mmap_mode="r", allow_pickle=False)
        except (ValueError, OSError) as exc:
            raise InputError(f"{path}: not a readable .npy array: {exc}") from None
        shape = self._array.shape
        if len(shape) != 2 or shape[1] == 0:
            raise InputError(f"{path}: expected a 2-D array, one row per request; got shape "
                             f"{shape}")
        if self._array.dtype.kind not in "biuf":
            raise InputError(f"{path}: expected numbers, got dtype {self._array.dtype}")
        if problem := op.problem(shape[1]):
            raise InputError(f"{path}: rows of {shape[1]} values do not fit {op.name}: {problem}")
        self.total = shape[0]
        self._ids = ids
        self._op = op

    @property
    def width(self) -> int:
        """Values per row."""
        return int(self._array.shape[1])

    @property
    def op(self) -> str:
        """The op of every row."""
        return self._op.name

    @property
    def args(self) -> dict[str, Any]:
        """The args of every row."""
        return self._op.args

    @property
    def id_prefix(self) -> str:
        """The prefix of the rows' ids."""
        return self._ids.prefix

    def blocks(self, rows: int) -> Iterator[tuple[int, npt.NDArray[np.float64]]]:
        """``(number of the first row, float64 rows)`` in blocks of ``rows``, unchecked.

        For the API's ``.npy`` path: the API checks every row and names the bad ones.
        """
        for start in range(0, self.total, rows):
            block = np.ascontiguousarray(self._array[start:start + rows], dtype=np.float64)
            yield start + 1, block

    def __iter__(self) -> Iterator[Outgoing | Rejected]:
        op, args = self._op.name, self._op.args
        for index in range(self.total):
            row = np.asarray(self._array[index], dtype=np.float64)
            number = index + 1
            if not np.isfinite(row).all():
                yield Rejected(f"row {number}", "data contains NaN or Infinity")
                continue
            fields = RequestFields.model_construct(
                id=self._ids(number), op=op, args=args, submitted_at=time.time()
            )
            yield Outgoing(fields.id, encode_binary(fields, row), BINARY)
