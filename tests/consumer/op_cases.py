"""Per-op test data, keyed by op name: a strategy of valid inputs and an honest tolerance.

Every op in ``consumer.ops.REGISTRY`` needs an entry in ``CASES``. The property tests look the
entry up for each registered op and fail by name when there is none, so a new op cannot slip
through untested: add its case here.

Tolerances are scaled by the data, not by the result: a sum that cancels to ~0 is still only as
exact as Σ|x| allows, whichever order the kernel adds in.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import hypothesis.extra.numpy as hnp
import numpy as np
import pytest
from hypothesis import strategies as st

from consumer.kernels import Array

RTOL = 1e-9
EPS = float(np.finfo(np.float64).eps)
TINY = 1e-300
VALUE_RANGE = 1e6
VALUES = st.floats(-VALUE_RANGE, VALUE_RANGE, allow_nan=False, allow_infinity=False)
MAX_LEN = 40

Raw = tuple[Array, dict[str, Any]]
Close = Callable[[Array, Any, Any, Any], bool]


@dataclass(frozen=True)
class OpCase:
    """How to make valid requests for one op and how close its answers must be."""

    shapes: st.SearchStrategy[Any]
    """A shape all requests of an equal-shape batch share (a length, or matmul's dims)."""
    length: Callable[[Any], int]
    """How many values a request of that shape holds."""
    request: Callable[[Any, Array], st.SearchStrategy[Raw]]
    """Data and raw args of one request of that shape, made from that many drawn values."""
    close: Close
    """``close(data, parsed_args, got, want)``: batched ``got`` is within tolerance of ``want``."""


def _no_args(shape: Any, x: Array) -> st.SearchStrategy[Raw]:
    return st.just((x, {}))


def _scalar(scale: Callable[[Array, Any], float]) -> Close:
    def close(x: Array, args: Any, got: Any, want: Any) -> bool:
        return bool(np.ndim(got) == 0 and abs(got - want) <= RTOL * scale(x, args) + TINY)
    return close


def _exact(x: Array, args: Any, got: Any, want: Any) -> bool:
    return bool(np.ndim(got) == 0 and got == want)


def _reduction(close: Close) -> OpCase:
    return OpCase(st.integers(1, MAX_LEN), lambda n: n, _no_args, close)


def _with_ddof(n: int, x: Array) -> st.SearchStrategy[Raw]:
    args = st.one_of(st.just({}), st.integers(0, n - 1).map(lambda d: {"ddof": d}))
    return st.tuples(st.just(x), args)


def _mean_slack(x: Array, args: Any) -> float:
    # Two-pass variance is exact up to rounding relative to the variance itself, except that
    # kernel and reference may round the mean differently, by δ ≲ n·ε·max|x| each; a mean off
    # by δ adds n·δ² to the sum of squared deviations.
    n = x.size
    delta = n * EPS * float(np.abs(x).max())
    return 4.0 * n * delta * delta / (n - args.ddof)


def _var_close(x: Array, args: Any, got: Any, want: Any) -> bool:
    return bool(np.ndim(got) == 0 and
                abs(got - want) <= RTOL * want + _mean_slack(x, args) + TINY)


def _std_close(x: Array, args: Any, got: Any, want: Any) -> bool:
    # |√a - √b| ≤ |a - b| / √b and ≤ √|a - b|: relative where σ is large, √slack where it is 0.
    return bool(np.ndim(got) == 0 and
                abs(got - want) <= RTOL * want + math.sqrt(_mean_slack(x, args)) + TINY)


def _matmul_request(dims: tuple[int, int, int], x: Array) -> st.SearchStrategy[Raw]:
    m, k, n = dims
    return st.just((x, {"m": m, "k": k, "n": n}))


def _matmul_close(x: Array, args: Any, got: Any, want: Any) -> bool:
    m, k, n = args.m, args.k, args.n
    a, b = x[: m * k].reshape(m, k), x[m * k :].reshape(k, n)
    got = np.asarray(got)
    return bool(got.shape == (m, n) and
                np.all(np.abs(got - want) <= RTOL * (np.abs(a) @ np.abs(b)) + TINY))


def _well_conditioned(n: int, x: Array) -> st.SearchStrategy[Raw]:
    """A strictly diagonally dominant n×n matrix: invertible, with a condition number near 1."""
    m = x.reshape(n, n) / VALUE_RANGE  # entries in [-1, 1]
    diagonal = np.diagonal(m).copy()
    np.fill_diagonal(m, 0.0)
    np.fill_diagonal(m, np.where(diagonal < 0, -1.0, 1.0) * (np.abs(m).sum(axis=1) + 1.0
                                                                + np.abs(diagonal)))
    return st.just((m.ravel(), {}))


def _inv_close(x: Array, args: Any, got: Any, want: Any) -> bool:
    n = math.isqrt(x.size)
    got = np.asarray(got)
    return bool(got.shape == (n, n) and np.allclose(got, want, rtol=1e-8, atol=1e-12))


CASES: dict[str, OpCase] = {
    "sum": _reduction(_scalar(lambda x, _: float(np.abs(x).sum()))),
    "mean": _reduction(_scalar(lambda x, _: float(np.abs(x).sum()) / x.size)),
    "sum_of_squares": _reduction(_scalar(lambda x, _: float(np.dot(x, x)))),
    "l2_norm": _reduction(_scalar(lambda x, _: math.sqrt(np.dot(x, x)))),
    "min": _reduction(_exact),
    "max": _reduction(_exact),
    "var": OpCase(st.integers(1, MAX_LEN), lambda n: n, _with_ddof, _var_close),
    "std": OpCase(st.integers(1, MAX_LEN), lambda n: n, _with_ddof, _std_close),
    "dot": OpCase(st.integers(1, MAX_LEN // 2), lambda h: 2 * h, _no_args,
                  _scalar(lambda x, _: float(np.abs(x[: x.size // 2] * x[x.size // 2 :]).sum()))),
    "matmul": OpCase(st.tuples(st.integers(1, 6), st.integers(1, 6), st.integers(1, 6)),
                     lambda d: d[0] * d[1] + d[1] * d[2], _matmul_request, _matmul_close),
    "inv": OpCase(st.integers(1, 6), lambda n: n * n, _well_conditioned, _inv_close),
}


def case(name: str) -> OpCase:
    """The case for op ``name``; fails the test, naming the op, when it has none."""
    try:
        return CASES[name]
    except KeyError:
        pytest.fail(f"op {name!r} is registered but has no test case: add one to "
                    "CASES in tests/consumer/op_cases.py", pytrace=False)


@st.composite
def batches(draw: st.DrawFn, name: str, max_size: int = 64) -> list[Raw]:
    """1..max_size valid requests for op ``name``: all of one shape, or shapes drawn each."""
    spec = case(name)
    size = draw(st.integers(1, max_size))
    if draw(st.booleans()):
        shapes = [draw(spec.shapes)] * size
    else:
        shapes = draw(st.lists(spec.shapes, min_size=size, max_size=size))
    lengths = [spec.length(shape) for shape in shapes]
    # One draw for the whole batch's values: far cheaper than one array strategy per request.
    flat = draw(hnp.arrays(np.float64, sum(lengths), elements=VALUES), label="values")
    parts = np.split(flat, np.cumsum(lengths)[:-1])
    return [draw(spec.request(shape, x.copy())) for shape, x in zip(shapes, parts, strict=True)]


def requests(name: str) -> st.SearchStrategy[Raw]:
    """One valid request for op ``name``."""
    spec = case(name)
    return spec.shapes.flatmap(lambda shape: hnp.arrays(
        np.float64, spec.length(shape), elements=VALUES).flatmap(
        lambda x: spec.request(shape, x)))
