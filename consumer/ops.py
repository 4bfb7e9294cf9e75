"""The op registry: every op's name, argument model, input check, batch kernel and reference.

Adding an op is one step: write its batch kernel in ``kernels.py`` (arrays in, results out) and
register it below with ``register(Op(...))``. The API lists it at ``GET /v1/ops``, validates
requests against it, and the worker runs it; ``tests/consumer/test_ops.py`` checks every
registered op's batch kernel against its reference automatically.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from consumer import kernels
from consumer.kernels import Array


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
    """The op is not registered."""

    def __init__(self, name: str) -> None:
        super().__init__("op", f"unknown op {name!r}; known ops: {', '.join(sorted(REGISTRY))}")


Check = Callable[[int, Any], str | None]
BatchKernel = Callable[[Sequence[Array], Sequence[Any]], Sequence[Any] | Array]
Reference = Callable[[Array, Any], Any]


def _any_length(size: int, args: Any) -> str | None:
    return None


@functools.cache
def _no_args(model: type[OpArgs]) -> OpArgs:
    """``model`` validated from ``{}``: args are frozen, so one instance serves every request
    that sends none (most of them; validating ``{}`` again each time was a tenth of a batch)."""
    return model.model_validate({})


@dataclass(frozen=True, slots=True)
class Op:
    """One registered op."""

    name: str
    summary: str
    batch: BatchKernel
    reference: Reference
    args: type[OpArgs] = OpArgs
    check: Check = _any_length
    cached: bool = False
    """Answer repeats from the result cache. Worth it only where computing costs more than
    hashing the data: ops whose work grows faster than their input (matrix products and
    inverses); a one-pass reduction computes faster than its cache key is made."""

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


REGISTRY: dict[str, Op] = {}


def register(op: Op) -> Op:
    """Add an op to the registry."""
    if op.name in REGISTRY:
        raise ValueError(f"op {op.name!r} is already registered")
    REGISTRY[op.name] = op
    return op


def get(name: str) -> Op:
    """The op called ``name``; ``UnknownOpError`` if there is none."""
    try:
        return REGISTRY[name]
    except KeyError:
        raise UnknownOpError(name) from None


def catalogue() -> list[dict[str, Any]]:
    """Every op, described, sorted by name."""
    return [REGISTRY[name].describe() for name in sorted(REGISTRY)]


def _reduction(name: str, summary: str, kernel: Callable[[Sequence[Array]], Array],
               reference: Callable[[Array], Any]) -> Op:
    return Op(name, summary, lambda arrays, _: kernel(arrays), lambda x, _: reference(x))


def _ddofs(args: Sequence[Any]) -> Array:
    return np.fromiter((a.ddof for a in args), dtype=np.float64, count=len(args))


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


for _op in (
    _reduction("sum_of_squares", "Σ x² of data.", kernels.batch_sum_of_squares,
               lambda x: float(np.dot(x, x))),
    _reduction("sum", "Σ x of data.", kernels.batch_sum, lambda x: float(np.sum(x))),
    _reduction("mean", "Arithmetic mean of data.", kernels.batch_mean, lambda x: float(np.mean(x))),
    _reduction("min", "Smallest value of data.", kernels.batch_min, lambda x: float(np.min(x))),
    _reduction("max", "Largest value of data.", kernels.batch_max, lambda x: float(np.max(x))),
    _reduction("l2_norm", "Euclidean norm √(Σ x²) of data.", kernels.batch_l2_norm,
               lambda x: float(np.linalg.norm(x))),
    Op("var", "Variance of data, divisor len(data) - ddof.",
       lambda arrays, args: kernels.batch_var(arrays, _ddofs(args)),
       lambda x, a: float(np.var(x, ddof=a.ddof)), DdofArgs, _check_ddof),
    Op("std", "Standard deviation of data, divisor len(data) - ddof.",
       lambda arrays, args: kernels.batch_std(arrays, _ddofs(args)),
       lambda x, a: float(np.std(x, ddof=a.ddof)), DdofArgs, _check_ddof),
    Op("dot", "x · y, where data is x followed by y (equal lengths).",
       lambda arrays, _: kernels.batch_dot(arrays),
       lambda x, _: float(np.dot(x[: x.size // 2], x[x.size // 2 :])), check=_check_even),
    Op("matmul", "A @ B, where data is A (m×k) then B (k×n), both row-major; result is m×n.",
       lambda arrays, args: kernels.batch_matmul(arrays, [(a.m, a.k, a.n) for a in args]),
       lambda x, a: x[: a.m * a.k].reshape(a.m, a.k) @ x[a.m * a.k :].reshape(a.k, a.n),
       MatmulArgs, _check_matmul, cached=True),
    Op("inv", "Inverse of the n×n matrix in data (row-major); error 'singular_matrix' if none.",
       lambda arrays, _: kernels.batch_inv(arrays),
       lambda x, _: np.linalg.inv(x.reshape(math.isqrt(x.size), -1)), check=_check_square,
       cached=True),
):
    register(_op)
