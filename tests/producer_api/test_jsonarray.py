"""The item-by-item JSON array parser agrees with ``orjson.loads`` on every body."""

from __future__ import annotations

import asyncio
from typing import Any

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from producer_api import jsonarray

TRICKY_TEXT = st.text(alphabet=st.sampled_from(list('{},[]" \\\nab:1')), max_size=12)
SCALARS = st.none() | st.booleans() | st.integers(-10, 10) | st.floats(allow_nan=False,
                                                                      allow_infinity=False)
VALUES = st.recursive(SCALARS | TRICKY_TEXT, lambda inner: st.lists(inner, max_size=3)
                      | st.dictionaries(TRICKY_TEXT, inner, max_size=3), max_leaves=8)
ITEMS = st.dictionaries(TRICKY_TEXT, VALUES, max_size=4)


def parse(body: bytes) -> Any:
    return asyncio.run(jsonarray.parse(body))


def same_as_orjson(body: bytes) -> None:
    try:
        expected = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        with pytest.raises(orjson.JSONDecodeError) as got:
            parse(body)
        assert str(got.value) == str(exc)
    else:
        assert parse(body) == expected


@given(st.lists(ITEMS, max_size=6), st.booleans())
def test_arrays_of_objects_parse_as_orjson_parses_them(array: list[Any], indent: bool) -> None:
    body = orjson.dumps(array, option=orjson.OPT_INDENT_2 if indent else 0)
    assert parse(body) == array
    assert parse(bytearray(body)) == array  # as read_body returns a body of several chunks


@given(st.lists(ITEMS, min_size=1, max_size=4), st.integers(0, 400), st.binary(max_size=3))
def test_damaged_bodies_fail_or_parse_exactly_as_orjson(array: list[Any], at: int,
                                                        junk: bytes) -> None:
    body = orjson.dumps(array)
    at %= len(body) + 1
    same_as_orjson(body[:at] + junk + body[at:])
    same_as_orjson(body[:at])


@pytest.mark.parametrize("body", [
    b"[]", b" [ ] ", b"{}", b'{"op": "sum"}', b"[1, 2]", b"[{}]", b"[{},{}]", b"[{} {}]",
    b"[{},]", b"[{}] x", b"[{}", b"", b"[", b'[{"a": "},{"}, {"b": [{"c": 1}, {"d": 2}]}]',
    b'[{"s": "' + b"},{" * 1000 + b'"}, {"t": 1}]',
])
def test_edge_cases_match_orjson(body: bytes) -> None:
    same_as_orjson(body)


def test_a_large_array_hands_the_loop_back_while_it_parses() -> None:
    array = [{"op": "sum", "data": [0.5] * 1000} for _ in range(200)]
    body = orjson.dumps(array)
    ticks = 0

    async def main() -> list[Any]:
        nonlocal ticks
        parsing = asyncio.ensure_future(jsonarray.parse(body))
        while not parsing.done():
            ticks += 1
            await asyncio.sleep(0)
        return parsing.result()

    assert asyncio.run(main()) == array
    assert ticks >= len(body) // jsonarray.SLICE_BYTES
