"""The worker's ops: each op of the catalogue (``schemas/ops.py``) bound to its batch kernel and
its one-request reference.

A batch kernel (``kernels.py``: arrays in, results out) computes a whole batch of one op in one
NumPy call; the reference computes one request the plain way. ``tests/consumer/test_ops.py``
checks every bound op's kernel against its reference automatically, and that every op of the
catalogue has a kernel.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from consumer import kernels
from consumer.kernels import Array
from schemas.ops import (
    CATALOGUE,
    DdofArgs,
    MatmulArgs,
    OpArgs,
    OpInputError,
    OpSpec,
    UnknownOpError,
)

__all__ = ["REGISTRY", "DdofArgs", "MatmulArgs", "Op", "OpArgs", "OpInputError",
           "UnknownOpError", "get", "register"]

BatchKernel = Callable[[Sequence[Array], Sequence[Any]], Sequence[Any] | Array]
Reference = Callable[[Array, Any], Any]


@dataclass(frozen=True, slots=True)
class Op(OpSpec):
    """An op of the catalogue with the code that computes it."""

    batch: BatchKernel = field(kw_only=True)
    reference: Reference = field(kw_only=True)

    @classmethod
    def bind(cls, spec: OpSpec, batch: BatchKernel, reference: Reference) -> Op:
        """``spec`` computed by ``batch`` (and, one request at a time, ``reference``)."""
        return cls(spec.name, spec.summary, spec.args, spec.check, spec.cached, batch=batch,
                   reference=reference)


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


def _reduction(kernel: Callable[[Sequence[Array]], Array],
               reference: Callable[[Array], Any]) -> tuple[BatchKernel, Reference]:
    return (lambda arrays, _: kernel(arrays)), (lambda x, _: reference(x))


def _ddofs(args: Sequence[Any]) -> Array:
    return np.fromiter((a.ddof for a in args), dtype=np.float64, count=len(args))


KERNELS: dict[str, tuple[BatchKernel, Reference]] = {
    "sum_of_squares": _reduction(kernels.batch_sum_of_squares, lambda x: float(np.dot(x, x))),
    "sum": _reduction(kernels.batch_sum, lambda x: float(np.sum(x))),
    "mean": _reduction(kernels.batch_mean, lambda x: float(np.mean(x))),
    "min": _reduction(kernels.batch_min, lambda x: float(np.min(x))),
    "max": _reduction(kernels.batch_max, lambda x: float(np.max(x))),
    "l2_norm": _reduction(kernels.batch_l2_norm, lambda x: float(np.linalg.norm(x))),
    "var": (lambda arrays, args: kernels.batch_var(arrays, _ddofs(args)),
            lambda x, a: float(np.var(x, ddof=a.ddof))),
    "std": (lambda arrays, args: kernels.batch_std(arrays, _ddofs(args)),
            lambda x, a: float(np.std(x, ddof=a.ddof))),
    "dot": (lambda arrays, _: kernels.batch_dot(arrays),
            lambda x, _: float(np.dot(x[: x.size // 2], x[x.size // 2 :]))),
    "matmul": (lambda arrays, args: kernels.batch_matmul(arrays, [(a.m, a.k, a.n) for a in args]),
               lambda x, a: x[: a.m * a.k].reshape(a.m, a.k) @ x[a.m * a.k :].reshape(a.k, a.n)),
    "inv": (lambda arrays, _: kernels.batch_inv(arrays),
            lambda x, _: np.linalg.inv(x.reshape(math.isqrt(x.size), -1))),
}

for _name, (_batch, _reference) in KERNELS.items():
    register(Op.bind(CATALOGUE[_name], _batch, _reference))
