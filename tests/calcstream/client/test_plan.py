"""How ``Client.map`` splits its input into batch calls (pure: no server)."""

from __future__ import annotations

import io

import numpy as np
import orjson
import pytest

from calcstream.client.bodies import NPY, Limits, plan_batches
from calcstream.client.errors import InvalidRequest


def test_equal_lengths_go_as_npy_blocks_within_the_byte_limit() -> None:
    matrix = np.arange(50 * 4, dtype=float).reshape(50, 4)
    limits = Limits(max_batch_bytes=1024 + 8 * 4 * 12)  # 12 rows of 4 float64 per body
    ids, posts = plan_batches("sum", matrix, {"ddof": 0}, limits, max_items=1000)
    assert [(p.first, p.count) for p in posts] == [(0, 12), (12, 12), (24, 12), (36, 12),
                                                   (48, 2)]
    assert len(ids) == len(set(ids)) == 50
    for post in posts:
        assert post.content_type == NPY
        assert orjson.loads(post.params["args"]) == {"ddof": 0}
        rows = np.load(io.BytesIO(post.body()))
        np.testing.assert_array_equal(rows, matrix[post.first:post.first + post.count])
        # The API names the rows of a body <id_prefix>-<index>: those are the ids planned.
        assert ids[post.first:post.first + post.count] == [
            f"{post.params['id_prefix']}-{i}" for i in range(post.count)]


def test_ragged_arrays_go_as_json_arrays_by_count_and_bytes() -> None:
    arrays = [[float(i)] * (1 + i % 3) for i in range(25)]
    ids, posts = plan_batches("sum", arrays, {}, Limits(max_batch_count=10), max_items=1000)
    assert [(p.first, p.count) for p in posts] == [(0, 10), (10, 10), (20, 5)]
    items = [item for p in posts for item in orjson.loads(p.body())]
    assert [item["id"] for item in items] == ids
    assert [item["data"] for item in items] == arrays

    _, by_window = plan_batches("sum", arrays, {}, Limits(), max_items=4)
    assert max(p.count for p in by_window) == 4
    _, by_bytes = plan_batches("sum", arrays, {}, Limits(max_batch_bytes=300), max_items=1000)
    assert all(len(p.body()) <= 300 for p in by_bytes) and len(by_bytes) > 1


def test_non_numbers_and_non_finite_values_are_refused_before_sending() -> None:
    with pytest.raises(InvalidRequest, match="item 1"):
        plan_batches("sum", [[1.0], ["x"]], {}, Limits(), max_items=10)
    with pytest.raises(InvalidRequest) as raised:
        plan_batches("sum", np.array([[1.0, 2.0], [np.nan, 1.0], [3.0, np.inf]]), {}, Limits(), 10)
    assert [f["field"] for f in raised.value.fields] == ["1.data", "2.data"]
    assert plan_batches("sum", [], {}, Limits(), max_items=10) == ([], [])
