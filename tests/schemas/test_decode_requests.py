"""Decoding a batch of request values: for every value the same outcome as decoding it alone
(the request, bit for bit, or the same error), whether its data was read the plain way."""

from __future__ import annotations

from typing import Any

import numpy as np
import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from schemas import floatjson
from schemas.encoding import (
    BINARY,
    JSON,
    DecodedRequest,
    DecodeError,
    decode_request,
    decode_requests,
    encode_binary,
)
from schemas.messages import RequestFields
from tests.schemas.strategies import request_fields

PAD = " " * 600
"""Whitespace that takes a small value past the size the plain reading starts at."""

PLAIN = [
    '{"id": "a", "op": "sum", "data": [1.5, -2, 3e-5, 0, -0.0, 1e-320, 1.7976931348623157e308]}',
    '{"id": "b", "op": "matmul", "data": [1, 2, 3, 4, 5, 6], "args": {"m": 1, "k": 2, "n": 2},'
    ' "deadline": 9e9, "submitted_at": 5, "schema_version": 1}',
    '{"op": "var", "data": [1.0, 2.0, 4.0], "args": {"ddof": 1}, "id": "c"}',
    '{"id": "d", "op": "s\\u00fcm", "data": [18446744073709551615, -9223372036854775808]}',
    '{"id": "e", "op": "sum", "args": {"nested": {"deep": true}}, "data": [2.0]}',
    '{"id": "f", "op": "sum", "data": [1.0], "args": {"ddof": 1}}',
    '{"id": "l", "op": "sum", "data": [1.0], "deadline": true}',
    '{"id": "m", "op": "sum", "data": [1.0], "schema_version": 1.0, "submitted_at": "5"}',
]
"""Values read the plain way; the batch's fields all valid."""

BROKEN = [
    '{"op": "sum", "data": [1.0]}',
    '{"id": "not an id!", "op": "sum", "data": [1.0]}',
    '{"id": "g", "op": "", "data": [1.0]}',
    '{"id": "h", "op": "sum", "data": [1.0], "colour": "blue"}',
    '{"id": "i", "op": "sum", "data": [1.0], "deadline": "soon"}',
    '{"id": "j", "op": "sum", "data": [1.0], "schema_version": 2}',
    '{"id": "k", "op": "sum", "data": [1.0], "args": 3}',
]
"""Values read the plain way whose fields break the contract."""

FULL = [
    '{"id": "m", "op": "sum", "data": [[1.0], [2.0]]}',
    '{"id": "n", "op": "sum", "data": [1.0], "note": "a [ in a string"}',
    '{"id": "o", "op": "sum", "data": [1.0], "data": [2.0]}',
    '{"id": "p", "op": "sum", "data": [true, 1.0]}',
    '{"id": "q", "op": "sum", "data": [null]}',
    '{"id": "r", "op": "sum", "data": ["1.0"]}',
    '{"id": "s", "op": "sum", "data": [1e400]}',
    '{"id": "t", "op": "sum", "data": [NaN]}',
    '{"id": "u", "op": "sum", "data": [-Infinity]}',
    '{"id": "v", "op": "sum", "data": [123456789012345678901234567890]}',
    '{"id": "w", "op": "sum", "data": []}',
    '{"id": "x", "op": "sum", "data": [1.0,]}',
    '{"id": "y", "op": "sum", "data": [1.0]} trailing',
    '[{"id": "z", "op": "sum", "data": [1.0]}]',
    '{"id": "za", "op": "sum"}',
    '{"id": "zb", "op": "sum", "data": 5}',
    '{not json [',
    '{"id": "\\ud800", "op": "sum", "data": [1.0]}',
]
"""Values the plain reading leaves to the full parse."""


def outcome(decoded: DecodedRequest | Exception) -> tuple[Any, ...]:
    """What a decoding came to, comparable field for field and bit for bit."""
    if isinstance(decoded, ValidationError):
        return "invalid", repr(decoded.errors(include_url=False))  # repr: NaN inputs compare
    if isinstance(decoded, Exception):
        return type(decoded).__name__, str(decoded)
    fields = decoded.fields.model_dump(include=set(RequestFields.model_fields))
    return "ok", fields, decoded.data.dtype.str, decoded.data.tobytes()


def alone(value: bytes | None, ctype: str = JSON) -> tuple[Any, ...]:
    try:
        return outcome(decode_request(value, ctype))
    except ValueError as exc:
        return outcome(exc)


def together(values: list[tuple[bytes | None, str]]) -> list[tuple[Any, ...]]:
    decoded = decode_requests(values)
    assert len(decoded) == len(values)
    return [outcome(each) for each in decoded]


@pytest.mark.parametrize("text", PLAIN + BROKEN)
def test_a_plain_value_is_read_apart_with_the_same_outcome(text: str) -> None:
    value = (text + PAD).encode()
    assert floatjson.read_request(value) is not None
    assert together([(value, JSON)]) == [alone(value)]


@pytest.mark.parametrize("text", FULL)
def test_any_other_value_takes_the_full_parse(text: str) -> None:
    value = (text + PAD).encode()
    assert floatjson.read_request(value) is None
    assert together([(value, JSON)]) == [alone(value)]


def test_a_batch_with_broken_values_among_plain_ones_decodes_each_as_alone() -> None:
    # One broken value fails the batch's validation of plain fields; every value must still
    # come out as it does alone, in its own slot.
    binary = encode_binary(RequestFields(id="bin", op="sum"), [1.0, 2.0])
    values: list[tuple[bytes | None, str]] = [
        *(((text + PAD).encode(), JSON) for text in PLAIN),
        *(((text + PAD).encode(), JSON) for text in BROKEN),
        *(((text + PAD).encode(), JSON) for text in FULL),
        (b'{"id": "small", "op": "sum", "data": [1.0]}', JSON),
        (binary, BINARY),
        (None, JSON),
        (b"{}", "text/csv"),
    ]
    values = values[::2] + values[1::2]  # broken ones between plain ones
    results = together(values)
    assert results == [alone(value, ctype) for value, ctype in values]
    by_value = {value: result for (value, _), result in zip(values, results, strict=True)}
    assert all(by_value[(text + PAD).encode()][0] == "ok" for text in PLAIN)
    assert all(by_value[(text + PAD).encode()][0] == "invalid" for text in BROKEN)
    assert by_value[binary][0] == "ok" and by_value[None][0] == DecodeError.__name__


def test_a_batch_of_plain_values_reads_each_request_whole() -> None:
    rng = np.random.default_rng(3)
    rows = [rng.standard_normal(100 * (i % 3 + 1)) for i in range(40)]
    values = [(orjson.dumps({"id": f"r-{i}", "op": "sum", "data": row},
                            option=orjson.OPT_SERIALIZE_NUMPY), JSON)
              for i, row in enumerate(rows)]
    decoded = decode_requests(values)
    for i, (row, each) in enumerate(zip(rows, decoded, strict=True)):
        assert isinstance(each, DecodedRequest)
        assert each.fields.id == f"r-{i}"
        assert each.data.dtype == np.dtype("<f8") and np.array_equal(each.data, row)


numbers = st.one_of(st.integers(-(2**63), 2**64 - 1),
                    st.floats(allow_nan=False, allow_infinity=False))


@settings(max_examples=80, deadline=None)
@given(st.lists(st.tuples(request_fields(), st.lists(numbers, min_size=1, max_size=80)),
                min_size=1, max_size=6))
def test_any_requests_decode_together_as_alone(requests: list[tuple[RequestFields, list[Any]]]
                                               ) -> None:
    values: list[tuple[bytes | None, str]] = []
    for fields, data in requests:
        doc = {**fields.model_dump(exclude_defaults=True), "data": data}
        values.append((orjson.dumps(doc) + PAD.encode(), JSON))
    assert together(values) == [alone(value) for value, _ in values]
