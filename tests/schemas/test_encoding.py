"""Request and result values in each content type: round trips, and which error a bad value
raises."""

from __future__ import annotations

import struct

import hypothesis.extra.numpy as hnp
import numpy as np
import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from schemas.encoding import (
    BINARY,
    CONTENT_TYPE_HEADER,
    JSON,
    DecodeError,
    content_type,
    decode_request,
    encode_binary,
    encode_json,
    float64_bytes,
    is_result_frame,
    peek_id,
    result_array,
    result_frame,
    result_from_json,
    result_meta,
    result_to_json,
)
from schemas.messages import CalcRequest, RequestFields
from tests.schemas.strategies import calc_requests, request_fields

ANY_FLOAT64 = hnp.arrays(np.float64, st.integers(1, 100),
                         elements=st.floats(allow_nan=False, allow_infinity=False))


def frame(meta: bytes, body: bytes, length: int | None = None) -> bytes:
    """A binary frame built by hand."""
    return struct.pack("<I", len(meta) if length is None else length) + meta + body


@settings(max_examples=60, deadline=None)
@given(request=calc_requests())
def test_json_round_trip(request: CalcRequest) -> None:
    decoded = decode_request(encode_json(request))
    assert decoded.fields == request
    assert decoded.data.dtype == np.float64
    assert decoded.data.tolist() == request.data


@settings(max_examples=60, deadline=None)
@given(fields=request_fields(), data=ANY_FLOAT64)
def test_binary_round_trip_is_bit_exact(fields: RequestFields, data: np.ndarray) -> None:
    decoded = decode_request(encode_binary(fields, data), BINARY)
    assert decoded.fields == fields
    assert decoded.data.dtype == np.float64
    assert decoded.data.tobytes() == data.astype("<f8").tobytes()


@settings(max_examples=30, deadline=None)
@given(request=calc_requests())
def test_a_json_request_re_encodes_as_binary(request: CalcRequest) -> None:
    # A CalcRequest is a RequestFields; its data list must not leak into the metadata.
    decoded = decode_request(encode_binary(request, request.data), BINARY)
    assert decoded.fields == RequestFields(**request.model_dump(exclude={"data"}))
    assert decoded.data.tolist() == request.data


@settings(max_examples=60, deadline=None)
@given(values=st.lists(st.floats(allow_nan=False, allow_infinity=False) | st.integers(-2**53, 2**53)
                       | st.booleans(), min_size=1, max_size=50))
def test_lists_pack_as_numpy_packs_them(values: list[float]) -> None:
    assert float64_bytes(values) == np.asarray(values, dtype="<f8").tobytes()


def test_nested_lists_and_arrays_pack_row_major() -> None:
    expected = np.arange(4.0).astype("<f8").tobytes()
    assert float64_bytes([[0, 1], [2, 3]]) == expected
    assert float64_bytes(np.arange(4.0).reshape(2, 2).T.T) == expected
    assert float64_bytes(np.arange(4, dtype=">f8")) == expected


def test_binary_frame_layout() -> None:
    fields = RequestFields(id="a", op="sum")
    value = encode_binary(fields, [1.0, -2.5])
    meta = b'{"id":"a","op":"sum"}'
    assert value == struct.pack("<I", len(meta)) + meta + struct.pack("<2d", 1.0, -2.5)


def test_binary_data_is_row_major_little_endian_whatever_the_input_layout() -> None:
    matrix = np.arange(6.0).reshape(2, 3)
    fields = RequestFields(id="m", op="inv")
    for layout in (matrix, np.asfortranarray(matrix), matrix.astype(">f8"), matrix.T.T):
        assert decode_request(encode_binary(fields, layout), BINARY).data.tolist() == \
            [0.0, 1.0, 2.0, 3.0, 4.0, 5.0]


META = b'{"id":"a","op":"sum"}'


@pytest.mark.parametrize(
    ("value", "ctype"),
    [
        (None, JSON),
        (None, BINARY),
        (b"", JSON),
        (b"{not json", JSON),
        (b"\xff\xfe\x00", JSON),
        (b'{"id":"a","op":"sum","data":[1]', JSON),
        (b"\x01\x00", BINARY),
        (frame(META, b"\0" * 8, length=len(META) + 1), BINARY),
        (frame(META, b"\0" * 8, length=2**32 - 1), BINARY),
        (frame(META, b""), BINARY),
        (frame(META, b"\0" * 12), BINARY),
        (frame(b"{id", b"\0" * 8), BINARY),
        (frame(b"\xff", b"\0" * 8), BINARY),
        (b'{"id":"a","op":"sum","data":[1]}', "text/csv"),
        (b'{"id":"a","op":"sum","data":[1]}', ""),
    ],
    ids=["null JSON", "null binary", "empty", "not JSON", "not UTF-8", "truncated JSON",
         "no length", "length past the end", "huge length", "no array", "ragged array",
         "metadata not JSON", "metadata not UTF-8", "unknown type", "empty type"],
)
def test_bytes_not_in_the_claimed_format_raise_decode_error(value: bytes | None,
                                                            ctype: str) -> None:
    with pytest.raises(DecodeError):
        decode_request(value, ctype)


@pytest.mark.parametrize(
    ("value", "ctype", "loc"),
    [
        (b"[1, 2]", JSON, ()),
        (b'"a"', JSON, ()),
        (b'{"op":"sum","data":[1]}', JSON, ("id",)),
        (b'{"id":"a b","op":"sum","data":[1]}', JSON, ("id",)),
        (b'{"id":"a","op":"","data":[1]}', JSON, ("op",)),
        (b'{"id":"a","op":"sum","data":[]}', JSON, ("data",)),
        (b'{"id":"a","op":"sum","data":[1, NaN]}', JSON, ("data", 1)),
        (b'{"id":"a","op":"sum","data":[Infinity]}', JSON, ("data", 0)),
        (b'{"id":"a","op":"sum","data":[1],"extra":1}', JSON, ("extra",)),
        (b'{"schema_version":2,"id":"a","op":"sum","data":[1]}', JSON, ("schema_version",)),
        (b'{"id":"a","op":"sum","data":[1],"args":[]}', JSON, ("args",)),
        (frame(b"[]", b"\0" * 8), BINARY, ()),
        (frame(b'{"op":"sum"}', b"\0" * 8), BINARY, ("id",)),
        (frame(b'{"id":"a","op":"sum","data":[1]}', b"\0" * 8), BINARY, ("data",)),
        (frame(META, struct.pack("<3d", 1.0, 2.0, float("nan"))), BINARY, ("data", 2)),
        (frame(META, struct.pack("<d", float("-inf"))), BINARY, ("data", 0)),
    ],
    ids=["array", "string", "no id", "bad id", "empty op", "empty data", "NaN", "Infinity",
         "extra field", "version 2", "args not an object", "binary metadata not an object",
         "binary no id", "binary data in metadata", "binary NaN", "binary -Infinity"],
)
def test_values_that_break_the_contract_raise_validation_error(
    value: bytes, ctype: str, loc: tuple[str | int, ...]
) -> None:
    with pytest.raises(ValidationError) as info:
        decode_request(value, ctype)
    assert info.value.errors()[0]["loc"] == loc


def test_decode_error_is_a_value_error_and_not_a_validation_error() -> None:
    assert issubclass(DecodeError, ValueError)
    assert not issubclass(DecodeError, ValidationError)


@pytest.mark.parametrize(
    ("headers", "want"),
    [
        (None, JSON),
        ((), JSON),
        ([("traceparent", b"x")], JSON),
        ([(CONTENT_TYPE_HEADER, JSON.encode())], JSON),
        ([("Content-Type", b"Application/JSON; charset=utf-8")], JSON),
        ([("x", b"y"), (CONTENT_TYPE_HEADER, BINARY.encode())], BINARY),
        ([(CONTENT_TYPE_HEADER, b" " + BINARY.encode() + b" ;v=1")], BINARY),
        ([(CONTENT_TYPE_HEADER, b"text/csv")], "text/csv"),
        ([(CONTENT_TYPE_HEADER, b"")], ""),
        ([(CONTENT_TYPE_HEADER, None)], ""),  # Kafka allows a null header value
    ],
)
def test_content_type_reads_the_header(headers: object, want: str) -> None:
    assert content_type(headers) == want


@pytest.mark.parametrize(
    ("value", "key", "want"),
    [
        (b'{"id":"from-value","op":"x"}', b"from-key", "from-value"),
        (b'{"id":"from-value","data":[NaN]}', None, "from-value"),
        (b"{not json", b"from-key", "from-key"),
        (b'{"id":7}', b"from-key", "from-key"),
        (b'{"id":""}', b"from-key", "from-key"),
        (b"[1]", b"from-key", "from-key"),
        (None, b"from-key", "from-key"),
        (b"{not json", None, None),
        (b"{not json", b"", None),
        (b"{not json", b"\xff\xfe", None),
        (orjson.dumps({"id": "x" * 500}), None, "x" * 128),
        (b"{}", b"k" * 500, "k" * 128),
    ],
)
def test_peek_id_reads_the_value_then_the_key(value: bytes | None, key: bytes | None,
                                              want: str | None) -> None:
    assert peek_id(value, key) == want


def test_peek_id_reads_binary_frames_by_their_key() -> None:
    value = encode_binary(RequestFields(id="in-meta", op="sum"), [1.0])
    assert peek_id(value, b"the-key") == "the-key"


def test_a_binary_result_round_trips_and_a_broken_one_says_what_is_wrong() -> None:
    values = np.array([[1.5, np.nan], [-np.inf, 0.0]])
    value = result_frame(b'{"id":"r","status":"ok","op":"inv"}', values)
    assert is_result_frame(value) and not is_result_frame(b'{"id":"r"}')
    meta, back = result_array(value)
    assert meta == {"id": "r", "status": "ok", "op": "inv", "shape": [2, 2]}
    assert np.array_equal(back, values, equal_nan=True)
    assert orjson.loads(result_to_json(value))["result"] == [[1.5, "NaN"], ["-Infinity", 0.0]]
    assert np.array_equal(result_from_json(orjson.loads(result_to_json(value))), values,
                          equal_nan=True)
    meta_end = value.index(b"}") + 1
    broken = {
        value[:6]: "no magic and length prefix",
        value[:4] + struct.pack("<I", 10_000) + value[8:]: "runs past the end",
        value[:-8]: "needs 32 bytes of values; it has 24",
        value[:8] + b"[1]" + b" " * (meta_end - 11) + value[meta_end:]: "not a JSON object",
        value[:8] + b"{" + b" " * (meta_end - 9) + value[meta_end:]: "not valid JSON",
        b"\x93CSR" + struct.pack("<I", 14) + b'{"shape":[-4]}' + values.tobytes():
            "non-negative",
    }
    for frame_bytes, message in broken.items():
        with pytest.raises(DecodeError, match=message):
            result_meta(frame_bytes)
