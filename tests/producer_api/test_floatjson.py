"""A JSON body's data read straight into float64: the same records and the same errors as the
full parse, and the full parse for every body that is not the plain case; the same for a
WebSocket ``submit`` message's request (no broker)."""

from __future__ import annotations

import asyncio

import numpy as np
import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from producer_api import intake, jsonarray
from producer_api.errors import InvalidRequest
from producer_api.intake import Prepared, from_json, from_object, from_plain
from schemas import floatjson

NOW = 1_700_000_000.5
PAD = " " * floatjson.SMALLEST
"""Whitespace that takes a small body past the size the plain reading starts at."""


def record(body: bytes, plain: bool) -> Prepared | InvalidRequest:
    """What the API makes of ``body`` (binary records), read the plain way or the full way."""
    saved = floatjson.SMALLEST
    floatjson.SMALLEST = saved if plain else 1 << 62
    try:
        return from_json(body, 1_000, NOW, binary=True, mint=lambda: "minted")
    except InvalidRequest as exc:
        return exc
    finally:
        floatjson.SMALLEST = saved


def same(body: bytes) -> Prepared | InvalidRequest:
    """The outcome of ``body``, the same both ways (records byte for byte, errors field for
    field)."""
    return alike(record(body, True), record(body, False))


def alike(plain: Prepared | InvalidRequest, full: Prepared | InvalidRequest
          ) -> Prepared | InvalidRequest:
    """``full``, once ``plain`` is found to be the same outcome."""
    if isinstance(full, InvalidRequest):
        assert isinstance(plain, InvalidRequest), plain
        assert plain.fields == full.fields
    else:
        assert isinstance(plain, Prepared), plain.fields
        assert (plain.id, plain.op, plain.value, plain.headers, plain.fingerprint) == (
            full.id, full.op, full.value, full.headers, full.fingerprint)
    return full


PLAIN = [
    '{"op": "sum", "data": [1.5, -2, 3e-5, 0, -0.0, 1e-320, 1.7976931348623157e308]}',
    '{"id": "mine", "op": "matmul", "data": [1, 2, 3, 4, 5, 6], "args": {"m": 1, "k": 2, '
    '"n": 2}, "deadline": 9e9, "submitted_at": 5}',
    '{"op": "var", "data": [1.0, 2.0, 4.0], "args": {"ddof": 1}, "id": null}',
    '{"op": "nope", "data": [1.0]}',
    '{"op": "sum", "data": [1.0], "id": "not an id!"}',
    '{"op": "sum", "data": [1.0], "colour": "blue"}',
    '{"op": "sum", "data": [1.0], "deadline": "soon"}',
    '{"op": "sum", "data": [1.0], "schema_version": 2}',
    '{"op": "matmul", "data": [1.0, 2.0], "args": {"m": 1, "k": 1, "n": 1}}',
    '{"op": "sum", "data": [1.0], "args": {"ddof": 1}}',
    '{"op": "sum", "d\\u0061ta2": 1, "data": [2.0]}',
    '{"op": "s\\u00fcm", "data": [2.0]}',
    '{"op": "sum", "data": [1.0], "id": "\u00ff"}',
]

FULL = [
    '{"op": "sum", "data": [[1.0], [2.0]]}',
    '{"op": "sum", "data": [1.0], "note": "a [ in a string"}',
    '{"op": "sum", "data": [1.0], "data": [2.0]}',
    '{"op": "sum", "d\\u0061ta": [1.0], "data": 2}',
    '{"op": "sum", "op": "mean", "data": [1.0]}',
    '{"op": "sum", "data": [true, 1.0]}',
    '{"op": "sum", "data": [null]}',
    '{"op": "sum", "data": ["1.0"]}',
    '{"op": "sum", "data": [1e400]}',
    '{"op": "sum", "data": [NaN]}',
    '{"op": "sum", "data": [Infinity]}',
    '{"op": "sum", "data": [123456789012345678901234567890]}',
    '{"op": "sum", "data": []}',
    '{"op": "sum", "data": {"x": [1.0]}}',
    '{"op": "sum", "data": [1.0,]}',
    '{"op": "sum", "data": [1.0]} trailing',
    '[{"op": "sum", "data": [1.0]}]',
    '{"op": "sum", "args": [1], "data": 5}',
    '{"op": "sum"}',
]


@pytest.mark.parametrize("text", PLAIN)
def test_a_plain_body_is_read_apart_with_the_same_outcome(text: str) -> None:
    body = (text + PAD).encode()
    assert floatjson.read(body) is not None
    same(body)


@pytest.mark.parametrize("text", FULL)
def test_any_other_body_takes_the_full_parse(text: str) -> None:
    body = (text + PAD).encode()
    assert floatjson.read(body) is None
    same(body)


def test_small_bodies_and_invalid_utf8_take_the_full_parse() -> None:
    assert floatjson.read(b'{"op": "sum", "data": [1.0]}') is None
    assert floatjson.read(b'{"op": "sum", "data": [1.0], "id": "\xff"}' + PAD.encode()) is None


def test_a_large_body_reads_to_the_same_bytes() -> None:
    values = np.random.default_rng(5).standard_normal(20_000)
    body = orjson.dumps({"op": "sum", "data": values}, option=orjson.OPT_SERIALIZE_NUMPY)
    fields, packed = floatjson.read(body) or ({}, b"")
    assert fields == {"op": "sum"}
    assert np.array_equal(np.frombuffer(packed, dtype="<f8"), values)


numbers = st.one_of(st.integers(-(2**63), 2**64 - 1),
                    st.floats(allow_nan=False, allow_infinity=False))


@given(st.lists(numbers, min_size=1, max_size=50), st.sampled_from(["sum", "mean", "max"]))
def test_any_numbers_read_as_the_full_parse_reads_them(values: list[float], op: str) -> None:
    body = orjson.dumps({"op": op, "data": values}) + PAD.encode()
    result = same(body)
    assert isinstance(result, Prepared)


def submit_message(request: str) -> bytes:
    """A WebSocket ``submit`` message carrying ``request``, past the plain reading's size."""
    return ('{"type": "submit", "ref": 7, "traceparent": "00-ab-cd-01", "request": '
            + request + "}" + PAD).encode()


def from_message(message: bytes, plain: bool) -> Prepared | InvalidRequest:
    """What the API makes of a submit message's request, the plain way or the full way (the
    whole message parsed, then the request validated as a Python value)."""
    try:
        if plain:
            read = floatjson.read_message(message, "request")
            assert read is not None
            outer, fields, packed = read
            assert outer == {"type": "submit", "ref": 7, "traceparent": "00-ab-cd-01"}
            return from_plain(fields, packed, 1_000, NOW, mint=lambda: "minted")
        return from_object(orjson.loads(message)["request"], 1_000, NOW, where="request",
                           binary=True, mint=lambda: "minted")
    except InvalidRequest as exc:
        return exc


@pytest.mark.parametrize("text", PLAIN)
def test_a_plain_submit_message_is_read_apart_with_the_same_outcome(text: str) -> None:
    message = submit_message(text)
    alike(from_message(message, True), from_message(message, False))


@pytest.mark.parametrize("text", [*FULL, '"not an object"', "null"])
def test_any_other_submit_message_takes_the_full_parse(text: str) -> None:
    assert floatjson.read_message(submit_message(text), "request") is None


@pytest.mark.parametrize("message", [
    '{"type": "submit", "request": {"op": "sum", "data": [1.0]}, "request": {"op": "max"}}',
    '{"type": "subscribe", "ids": ["a", "b"]}',
    '{"type": "submit", "ids": ["a"], "request": {"op": "sum", "data": 1}}',
    '{"type": "submit", "req": {"op": "sum", "data": [1.0]}}',
    '[{"type": "submit", "request": {"op": "sum", "data": [1.0]}}]',
])
def test_a_message_that_is_not_a_plain_submit_takes_the_full_parse(message: str) -> None:
    assert floatjson.read_message((message + PAD).encode(), "request") is None


def json_object(text: str) -> bool:
    """``text`` is one JSON object (a batch body of such items is valid JSON)."""
    try:
        return isinstance(orjson.loads(text), dict)
    except orjson.JSONDecodeError:
        return False


def batch_outcomes(body: bytes, plain: bool) -> list[Prepared | InvalidRequest]:
    """What the API makes of each item of a JSON batch body: items read the plain way where
    they can be (as the route reads them), or every item parsed whole and validated as a
    Python value."""
    items = (asyncio.run(jsonarray.parse(body, intake.read_item)) if plain
             else orjson.loads(body))
    out: list[Prepared | InvalidRequest] = []
    for item in items:
        try:
            out.append(intake.from_item(item, 1_000, NOW, binary=True, mint=lambda: "minted"))
        except InvalidRequest as exc:
            out.append(exc)
    return out


def test_a_batch_reads_each_plain_item_apart_with_the_same_outcome() -> None:
    # Padding inside each object takes its text past the size the plain reading starts at.
    texts = [*PLAIN, *(t for t in FULL if t.startswith("{") and json_object(t))]
    body = ("[" + ",\n".join("{" + PAD + text[1:] for text in texts) + "]").encode()
    items = asyncio.run(jsonarray.parse(body, intake.read_item))
    assert sum(isinstance(item, intake.Plain) for item in items) == len(PLAIN)
    plain, full = batch_outcomes(body, True), batch_outcomes(body, False)
    assert len(plain) == len(full) == len(texts)
    for one, other in zip(plain, full, strict=True):
        alike(one, other)
