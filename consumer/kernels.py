"""Vectorised NumPy kernels: arrays in, arrays out. No I/O, no asyncio.

Each ``batch_*`` function computes one op for many requests at once. Requests of equal length
are stacked into one 2-D array and reduced along axis 1; ragged batches are concatenated and
reduced per segment with ``ufunc.reduceat``. Either way the batch costs a handful of NumPy calls,
not one per request.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Hashable, Sequence
from typing import TypeVar

import numpy as np
import numpy.typing as npt

Array = npt.NDArray[np.float64]
T = TypeVar("T")
K = TypeVar("K", bound=Hashable)


class Segments:
    """A batch of 1-D arrays, viewed either stacked (equal lengths) or concatenated."""

    __slots__ = ("arrays", "lengths", "stacked", "_flat", "_starts")

    def __init__(self, arrays: Sequence[Array]) -> None:
        self.arrays = arrays
        self.lengths = np.fromiter((a.shape[0] for a in arrays), dtype=np.intp, count=len(arrays))
        self._flat: Array | None = None
        self._starts: npt.NDArray[np.intp] | None = None
        self.stacked: Array | None = None
        if self.lengths.min() == self.lengths.max():
            self.stacked = rows(arrays)
            self._flat = self.stacked.reshape(-1)  # the same copy, end to end

    @property
    def flat(self) -> Array:
        """All arrays end to end."""
        if self._flat is None:
            self._flat = np.concatenate(self.arrays)
        return self._flat

    @property
    def starts(self) -> npt.NDArray[np.intp]:
        """Offset of each array in ``flat``."""
        if self._starts is None:
            self._starts = np.concatenate(([0], np.cumsum(self.lengths)[:-1])).astype(np.intp)
        return self._starts

    def reduce(self, ufunc: np.ufunc, values: Array | None = None) -> Array:
        """``ufunc.reduce`` of each segment; ``values`` replaces ``flat`` when given."""
        if values is None and self.stacked is not None:
            reduced: Array = ufunc.reduce(self.stacked, axis=1)
        else:
            reduced = ufunc.reduceat(self.flat if values is None else values, self.starts)
        return reduced


def batch_sum(arrays: Sequence[Array]) -> Array:
    """Sum of each array."""
    return Segments(arrays).reduce(np.add)


def batch_sum_of_squares(arrays: Sequence[Array]) -> Array:
    """Sum of squares of each array."""
    seg = Segments(arrays)
    if seg.stacked is not None:
        squares: Array = np.einsum("ij,ij->i", seg.stacked, seg.stacked)
        return squares
    flat = seg.flat
    return seg.reduce(np.add, flat * flat)


def batch_mean(arrays: Sequence[Array]) -> Array:
    """Arithmetic mean of each array."""
    seg = Segments(arrays)
    return seg.reduce(np.add) / seg.lengths


def batch_var(arrays: Sequence[Array], ddof: Array) -> Array:
    """Variance of each array (two-pass, as ``np.var``), with a per-request ``ddof``."""
    seg = Segments(arrays)
    if seg.stacked is not None:
        dev = seg.stacked - seg.stacked.mean(axis=1, keepdims=True)
        ss = np.einsum("ij,ij->i", dev, dev)
    else:
        means = seg.reduce(np.add) / seg.lengths
        dev = seg.flat - np.repeat(means, seg.lengths)
        ss = seg.reduce(np.add, dev * dev)
    return ss / (seg.lengths - ddof)  # type: ignore[no-any-return]


def batch_std(arrays: Sequence[Array], ddof: Array) -> Array:
    """Standard deviation of each array."""
    return np.sqrt(batch_var(arrays, ddof))


def batch_min(arrays: Sequence[Array]) -> Array:
    """Minimum of each array."""
    return Segments(arrays).reduce(np.minimum)


def batch_max(arrays: Sequence[Array]) -> Array:
    """Maximum of each array."""
    return Segments(arrays).reduce(np.maximum)


def batch_l2_norm(arrays: Sequence[Array]) -> Array:
    """Euclidean norm of each array."""
    return np.sqrt(batch_sum_of_squares(arrays))


def rows(arrays: Sequence[Array]) -> Array:
    """Equal-length 1-D arrays as the rows of one 2-D array. One concatenation: ``np.stack``
    makes the same copy at a cost per array (about 3x the time for hundreds of short arrays)."""
    return np.concatenate(arrays).reshape(len(arrays), arrays[0].shape[0])


def batch_dot(arrays: Sequence[Array]) -> Array:
    """Dot product of the two halves of each array."""
    out = np.empty(len(arrays))
    for n, idx in group_by(arrays, lambda a: a.shape[0]).items():
        pairs = rows([arrays[i] for i in idx]).reshape(len(idx), 2, n // 2)
        out[idx] = np.einsum("ij,ij->i", pairs[:, 0], pairs[:, 1])
    return out


def batch_matmul(arrays: Sequence[Array], dims: Sequence[tuple[int, int, int]]) -> list[Array]:
    """``A @ B`` for each array holding A (m×k) then B (k×n), row-major."""
    out: list[Array] = [np.empty(0)] * len(arrays)
    for (m, k, n), idx in group_by(dims, lambda d: d).items():
        stacked = rows([arrays[i] for i in idx])
        a = stacked[:, : m * k].reshape(len(idx), m, k)
        b = stacked[:, m * k :].reshape(len(idx), k, n)
        for i, product in zip(idx, np.matmul(a, b), strict=True):
            out[i] = product
    return out


def batch_inv(arrays: Sequence[Array]) -> list[Array]:
    """Inverse of each n×n matrix. Raises ``LinAlgError`` if any one is singular."""
    out: list[Array] = [np.empty(0)] * len(arrays)
    for size, idx in group_by(arrays, lambda a: a.shape[0]).items():
        n = int(round(size**0.5))
        stacked = rows([arrays[i] for i in idx]).reshape(len(idx), n, n)
        for i, inverse in zip(idx, np.linalg.inv(stacked), strict=True):
            out[i] = inverse
    return out


def group_by(items: Sequence[T], key: Callable[[T], K]) -> dict[K, list[int]]:
    """Indices of ``items`` grouped by ``key``, in first-seen order."""
    groups: dict[K, list[int]] = defaultdict(list)
    for i, item in enumerate(items):
        groups[key(item)].append(i)
    return groups
