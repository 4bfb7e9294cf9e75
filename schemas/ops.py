"""The op catalogue: what every op is called, what arguments it takes and what data fits it.

This is the contract the API, the command line and outside clients validate requests against;
the worker binds a NumPy kernel to each entry (``consumer/ops.py``). Adding an op is two steps:
declare it here, then bind its kernel there (a test fails until both are done).
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError


class OpArgs(BaseModel):
    """Arguments of an op that takes none; ops with arguments subclass it."""

    model_config = ConfigDict(frozen=True, extra="forbid")


class DdofArgs(OpArgs):
    """Delta degrees of freedom: the divisor is ``len(data) - ddof``."""

    ddof: int = Field(default=0, ge=0, description="Delta degrees of freedom.")


class MatmulArgs(OpArgs):
    """Shapes of ``A`` (m×k) and ``B`` (k×n)."""

    m: int = Field(ge=1, le=4096, description="Rows of A.")
    k: int = Field(ge=1, le=4096, description="Columns of A, rows of B.")
    n: int = Field(ge=1, le=4096, description="Columns of B.")


class OpInputError(ValueError):
    """A request's data or args do not fit its op."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


class UnknownOpError(OpInputError):
    """No op has that name."""

    def __init__(self, name: str) -> None:
        super().__init__("op", f"unknown op {name!r}; known ops: {', '.join(sorted(CATALOGUE))}")


Check = Callable[[int, Any], str | None]


def _any_length(size: int, args: Any) -> str | None:
    return None


@functools.cache
def _no_args(model: type[OpArgs]) -> OpArgs:
    """``model`` validated from ``{}``: args are frozen, so one instance serves every request
    that sends none (most of them; validating ``{}`` again each time was a tenth of a batch)."""
    return model.model_validate({})


@dataclass(frozen=True, slots=True)
class OpSpec:
    """One op of the catalogue: its name, arguments and the data lengths that fit it."""

    name: str
    summary: str
    args: type[OpArgs] = OpArgs
    check: Check = _any_length
    cached: bool = False
    """Answer repeats from the result cache. Worth it only where computing costs more than
    hashing the data: ops whose work grows faster than their input (matrix products and
    inverses); a one-pass reduction computes faster than its cache key is made."""
    array_result: bool = False
    """Its result is an array (else one number): what a binary result frame is worth asking
    for, since its values skip JSON on the worker, the broker and the API."""

    def parse(self, size: int, raw_args: Mapping[str, Any]) -> OpArgs:
        """Validate ``args`` and the data length; raise ``OpInputError`` naming the field."""
        try:
            args = self.args.model_validate(raw_args) if raw_args else _no_args(self.args)
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(str(p) for p in ("args", *first["loc"]))
            raise OpInputError(where, first["msg"]) from None
        problem = self.check(size, args)
        if problem:
            raise OpInputError("data", problem)
        return args

    def describe(self) -> dict[str, Any]:
        """Name, summary and JSON Schema of the args, as ``GET /v1/ops`` shows them."""
        return {"name": self.name, "summary": self.summary, "args": self.args.model_json_schema(),
                "cached": self.cached}


def _check_ddof(size: int, args: Any) -> str | None:
    if size <= args.ddof:
        return f"needs more than ddof={args.ddof} values, got {size}"
    return None


def _check_even(size: int, args: Any) -> str | None:
    if size % 2:
        return f"dot needs x then y of equal length (an even count), got {size} values"
    return None


def _check_matmul(size: int, args: Any) -> str | None:
    want = args.m * args.k + args.k * args.n
    if size != want:
        return (f"matmul with m={args.m}, k={args.k}, n={args.n} needs m*k + k*n = {want} "
                f"values, got {size}")
    return None


def _check_square(size: int, args: Any) -> str | None:
    n = math.isqrt(size)
    if n * n != size:
        return f"inv needs an n×n matrix (a square count of values), got {size}"
    return None


CATALOGUE: dict[str, OpSpec] = {spec.name: spec for spec in (
    OpSpec("sum_of_squares", "Σ x² of data."),
    OpSpec("sum", "Σ x of data."),
    OpSpec("mean", "Arithmetic mean of data."),
    OpSpec("min", "Smallest value of data."),
    OpSpec("max", "Largest value of data."),
    OpSpec("l2_norm", "Euclidean norm √(Σ x²) of data."),
    OpSpec("var", "Variance of data, divisor len(data) - ddof.", DdofArgs, _check_ddof),
    OpSpec("std", "Standard deviation of data, divisor len(data) - ddof.", DdofArgs,
           _check_ddof),
    OpSpec("dot", "x · y, where data is x followed by y (equal lengths).", check=_check_even),
    OpSpec("matmul", "A @ B, where data is A (m×k) then B (k×n), both row-major; result is m×n.",
           MatmulArgs, _check_matmul, cached=True, array_result=True),
    OpSpec("inv", "Inverse of the n×n matrix in data (row-major); error 'singular_matrix' if "
           "none.", check=_check_square, cached=True, array_result=True),
)}


def get(name: str) -> OpSpec:
    """The op called ``name``; ``UnknownOpError`` if there is none."""
    try:
        return CATALOGUE[name]
    except KeyError:
        raise UnknownOpError(name) from None


def catalogue() -> list[dict[str, Any]]:
    """Every op, described, sorted by name."""
    return [CATALOGUE[name].describe() for name in sorted(CATALOGUE)]
