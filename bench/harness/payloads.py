"""The bench's request bodies and the answers they must produce.

Bodies come from a seeded generator, so every run sends the same bytes. A small pool of distinct
bodies is cycled; a response is correct when its result matches the one its body must give (W1),
or when its first row is exact (W2, where B is the identity so A @ B == A bit for bit).
"""

from __future__ import annotations

import io
import time
import uuid
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt
import orjson

from schemas.encoding import encode_binary
from schemas.messages import RequestFields

Array = npt.NDArray[np.float64]

W1_SIZE = 1_000
WORKER_PATH_SIZE = 100
W2_N = 300


JSON_HEADERS = {"Content-Type": "application/json"}


@dataclass(frozen=True)
class BodyPool:
    """Distinct request bodies with how to check each one's answer."""

    bodies: list[bytes]
    expected: list[float]
    """W1: the exact result of each body (checked with a relative tolerance of 1e-9)."""
    prefix: list[bytes]
    """W2: bytes the answer must contain (empty when results are numbers)."""
    headers: dict[str, str] = field(default_factory=lambda: dict(JSON_HEADERS))
    """The request headers every body is sent with."""
    query: str = ""
    """What the target's URL gains (``&...``): a binary body's op and args."""


def rows(count: int, size: int, seed: int = 1) -> Array:
    """``count`` rows of ``size`` uniform floats in [0, 1)."""
    return np.random.default_rng(seed).random((count, size))


def sum_of_squares(matrix: Array) -> list[float]:
    """Σx² of each row, as the reference computes it."""
    return [float(np.dot(r, r)) for r in matrix]


def w1_pool(count: int = 8, size: int = W1_SIZE) -> BodyPool:
    """``sum_of_squares`` requests over ``size`` floats."""
    matrix = rows(count, size)
    bodies = [orjson.dumps({"op": "sum_of_squares", "data": r},
                           option=orjson.OPT_SERIALIZE_NUMPY) for r in matrix]
    return BodyPool(bodies, sum_of_squares(matrix), [b""] * count)


def w2_pool(count: int = 2, n: int = W2_N) -> BodyPool:
    """``matmul`` of a random n×n A by the n×n identity; the result's first row is A's."""
    bodies, prefixes = [], []
    for a in rows(count, n * n, seed=2):
        data = np.concatenate([a, np.eye(n).ravel()])
        bodies.append(orjson.dumps({"op": "matmul", "data": data,
                                    "args": {"m": n, "k": n, "n": n}},
                                   option=orjson.OPT_SERIALIZE_NUMPY))
        first = orjson.dumps(a[:8], option=orjson.OPT_SERIALIZE_NUMPY)[:-1]
        prefixes.append(b'"result":[' + first)
    return BodyPool(bodies, [0.0] * count, prefixes)


def w2_binary_pool(count: int = 2, n: int = W2_N) -> BodyPool:
    """``w2_pool``'s requests as raw float64 bodies (op and args in the query) asking for the
    result as a ``.npy`` file: calcstream's own binary contract, not the peers' recipe. A right
    answer holds the first 8 values of A's first row, as float64, where the values start."""
    bodies, prefixes = [], []
    for a in rows(count, n * n, seed=2):
        bodies.append(np.concatenate([a, np.eye(n).ravel()]).astype("<f8").tobytes())
        prefixes.append(a[:8].astype("<f8").tobytes())
    args = orjson.dumps({"m": n, "k": n, "n": n}).decode()
    return BodyPool(bodies, [0.0] * count, prefixes,
                    {"Content-Type": "application/octet-stream", "Accept": "application/x-npy"},
                    f"&op=matmul&args={args}")


def json_batch(matrix: Array, op: str = "sum_of_squares") -> bytes:
    """A JSON-array batch body: one request per row."""
    return orjson.dumps([{"op": op, "data": r} for r in matrix],
                        option=orjson.OPT_SERIALIZE_NUMPY)


def npy(matrix: Array) -> bytes:
    """An ``.npy`` body of the matrix (float64, C order)."""
    buf = io.BytesIO()
    np.save(buf, np.ascontiguousarray(matrix, dtype="<f8"), allow_pickle=False)
    return buf.getvalue()


def close(value: float, expected: float) -> bool:
    """Equal within a relative 1e-9 (batched kernels may sum in another order)."""
    return abs(value - expected) <= 1e-9 * max(1.0, abs(expected))


def frame_bytes(op: str, values: int) -> int:
    """Bytes of the binary request record the API writes for ``values`` floats."""
    fields = RequestFields.model_construct(id=uuid.uuid4().hex, op=op, args={}, deadline=None,
                                           submitted_at=time.time())
    return len(encode_binary(fields, np.zeros(values)))
