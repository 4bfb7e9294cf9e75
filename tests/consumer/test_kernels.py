"""Batch kernels: stacked and ragged paths agree, groups keep their order, inputs stay put."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import hypothesis.extra.numpy as hnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from consumer import kernels
from consumer.kernels import Array, Segments, group_by
from consumer.ops import REGISTRY
from tests.consumer.op_cases import MAX_LEN, VALUES, batches, case

Kernel = Callable[[Sequence[Array], Array], Array]

# Reductions over one array, with a per-request ddof where the op takes one (ignored otherwise).
REDUCTIONS: dict[str, Kernel] = {
    "sum": lambda a, _: kernels.batch_sum(a),
    "sum_of_squares": lambda a, _: kernels.batch_sum_of_squares(a),
    "mean": lambda a, _: kernels.batch_mean(a),
    "min": lambda a, _: kernels.batch_min(a),
    "max": lambda a, _: kernels.batch_max(a),
    "l2_norm": lambda a, _: kernels.batch_l2_norm(a),
    "var": kernels.batch_var,
    "std": kernels.batch_std,
}


@st.composite
def equal_then_odd(draw: st.DrawFn) -> tuple[list[Array], Array]:
    """1..32 arrays of one length, then one array of another length."""
    n = draw(st.integers(1, MAX_LEN))
    odd = draw(st.integers(1, MAX_LEN).filter(lambda m: m != n))
    same = draw(st.lists(hnp.arrays(np.float64, n, elements=VALUES), min_size=1, max_size=32))
    return same, draw(hnp.arrays(np.float64, odd, elements=VALUES))


@pytest.mark.parametrize("name", sorted(REDUCTIONS))
@settings(max_examples=30, deadline=None)
@given(batch=equal_then_odd(), data=st.data())
def test_the_stacked_and_the_ragged_path_agree(
    name: str, batch: tuple[list[Array], Array], data: st.DataObject
) -> None:
    same, odd = batch
    arrays = [*same, odd]
    smallest = min(a.size for a in arrays)
    ddof = np.full(len(arrays), float(data.draw(st.integers(0, smallest - 1), label="ddof")))
    assert Segments(same).stacked is not None and Segments(arrays).stacked is None

    stacked = REDUCTIONS[name](same, ddof[:-1])
    ragged = REDUCTIONS[name](arrays, ddof)

    assert stacked.dtype == ragged.dtype == np.float64
    assert ragged.shape == (len(arrays),)
    args = REGISTRY[name].parse(same[0].size, {"ddof": int(ddof[0])} if name in ("var", "std")
                                else {})
    for x, a, b in zip(same, stacked, ragged[:-1], strict=True):
        assert case(name).close(x, args, b, a), (a, b)


@pytest.mark.parametrize("name", sorted(REGISTRY))
@settings(max_examples=10, deadline=None)
@given(data=st.data())
def test_kernels_read_only_inputs_and_leave_them_unchanged(name: str, data: st.DataObject) -> None:
    # Binary requests arrive as read-only views of the record bytes (np.frombuffer).
    raw = data.draw(batches(name, max_size=8))
    op = REGISTRY[name]
    arrays = [x for x, _ in raw]
    before = [x.copy() for x in arrays]
    for x in arrays:
        x.setflags(write=False)
    op.batch(arrays, [op.parse(x.size, a) for x, a in raw])
    assert all(np.array_equal(x, y) for x, y in zip(arrays, before, strict=True))


def test_segments_view_a_batch_stacked_or_flat() -> None:
    equal = Segments([np.array([1.0, 2.0]), np.array([3.0, 4.0])])
    assert equal.stacked is not None and equal.stacked.tolist() == [[1.0, 2.0], [3.0, 4.0]]
    ragged = Segments([np.array([1.0]), np.array([2.0, 3.0, 4.0]), np.array([5.0, 6.0])])
    assert ragged.stacked is None
    assert ragged.flat.tolist() == [1.0, 2.0, 3.0, 4.0, 5.0, 6.0]
    assert ragged.starts.tolist() == [0, 1, 4]
    assert ragged.lengths.tolist() == [1, 3, 2]
    assert ragged.reduce(np.add).tolist() == [1.0, 9.0, 11.0]
    assert ragged.reduce(np.add, ragged.flat * 2).tolist() == [2.0, 18.0, 22.0]
    assert equal.reduce(np.maximum).tolist() == [2.0, 4.0]


def test_reductions_of_a_single_value() -> None:
    one = [np.array([3.0])]
    assert kernels.batch_sum(one).tolist() == [3.0]
    assert kernels.batch_mean(one).tolist() == [3.0]
    assert kernels.batch_var(one, np.zeros(1)).tolist() == [0.0]
    assert kernels.batch_l2_norm([np.array([-3.0])]).tolist() == [3.0]


def test_var_takes_a_ddof_per_request() -> None:
    arrays = [np.array([1.0, 2.0, 3.0, 4.0]), np.array([1.0, 2.0, 3.0, 4.0]), np.array([2.0, 4.0])]
    got = kernels.batch_var(arrays, np.array([0.0, 1.0, 1.0]))
    np.testing.assert_allclose(got, [1.25, 5.0 / 3.0, 2.0], rtol=1e-15)
    np.testing.assert_allclose(kernels.batch_std(arrays[:2], np.array([0.0, 1.0])),
                               [1.25**0.5, (5.0 / 3.0) ** 0.5], rtol=1e-15)


def test_group_by_keeps_first_seen_order_and_indices() -> None:
    groups = group_by(["b", "a", "b", "c", "a"], lambda s: s)
    assert list(groups.items()) == [("b", [0, 2]), ("a", [1, 4]), ("c", [3])]


def test_dot_groups_by_length_and_answers_in_input_order() -> None:
    arrays = [np.array([1.0, 2.0, 3.0, 4.0]), np.array([2.0, 5.0]), np.array([1.0, 1.0, 2.0, 2.0])]
    assert kernels.batch_dot(arrays).tolist() == [11.0, 10.0, 4.0]


def test_matmul_groups_by_dims_and_answers_in_input_order() -> None:
    a = np.arange(6.0)  # 2×3
    b = np.arange(3.0)  # 3×1
    c = np.array([1.0, 2.0, 3.0, 4.0])  # 2×2
    arrays = [np.concatenate([a, b]), np.concatenate([c, c]), np.concatenate([a, b + 1])]
    got = kernels.batch_matmul(arrays, [(2, 3, 1), (2, 2, 2), (2, 3, 1)])
    assert [g.shape for g in got] == [(2, 1), (2, 2), (2, 1)]
    assert got[0].tolist() == [[5.0], [14.0]]
    assert got[1].tolist() == [[7.0, 10.0], [15.0, 22.0]]
    assert got[2].tolist() == [[8.0], [26.0]]


def test_inv_inverts_each_size_and_raises_if_any_matrix_is_singular() -> None:
    good = [np.array([2.0]), np.array([2.0, 0.0, 0.0, 4.0]), np.array([4.0])]
    got = kernels.batch_inv(good)
    assert [g.tolist() for g in got] == [[[0.5]], [[0.5, 0.0], [0.0, 0.25]], [[0.25]]]
    with pytest.raises(np.linalg.LinAlgError, match="(?i)singular"):
        kernels.batch_inv([*good, np.ones(4)])
