"""Turning bodies into records, checked against the worker's own decoder (no broker)."""

from __future__ import annotations

import io

import numpy as np
import orjson
import pytest

from producer_api.errors import InvalidRequest
from producer_api.intake import Prepared, Rejected, fingerprint, from_json, from_npy, from_object
from schemas.encoding import BINARY, JSON, decode_request, float64_bytes

NOW = 1_700_000_000.5


def decoded(item: Prepared) -> tuple[dict[str, object], list[float]]:
    ctype = dict(item.headers)["content-type"].decode()
    request = decode_request(item.value, ctype)
    return request.fields.model_dump(), request.data.tolist()


def test_a_body_without_id_is_spliced_not_re_encoded() -> None:
    body = b'  {"op": "sum", "data": [1, 2.5]}'
    item = from_json(body, 100, NOW)
    assert item.value.endswith(b',"op": "sum", "data": [1, 2.5]}')
    fields, data = decoded(item)
    assert fields["id"] == item.id and fields["submitted_at"] == NOW
    assert data == [1.0, 2.5] and item.fingerprint is None


@pytest.mark.parametrize("body", [
    b'{"op": "matmul", "data": [1, 2, 3, 4, 5, 6], "args": {"m": 1, "k": 2, "n": 2}}',
    b'{"id": "mine", "op": "sum", "data": [0.1, 1e300], "deadline": 9e9, "submitted_at": 5}',
])
def test_a_binary_record_carries_what_the_json_record_carries(body: bytes) -> None:
    as_json = from_json(body, 100, NOW)
    as_binary = from_json(body, 100, NOW, binary=True)
    assert dict(as_binary.headers)["content-type"].decode() == BINARY
    assert (as_binary.op, as_binary.fingerprint) == (as_json.op, as_json.fingerprint)
    json_fields, json_data = decoded(as_json)
    binary_fields, binary_data = decoded(as_binary)
    assert binary_data == json_data
    # Generated ids differ between the two calls; everything else is the same.
    assert {**json_fields, "id": None, "data": None} == {**binary_fields, "id": None,
                                                          "data": None}
    assert binary_fields["id"] == as_binary.id


def test_client_ids_and_submitted_at_are_kept() -> None:
    body = b'{"id": "mine", "op": "sum", "data": [1], "submitted_at": 5}'
    item = from_json(body, 100, NOW)
    assert item.value == body and item.id == "mine" and item.fingerprint is not None
    fields, _ = decoded(item)
    assert fields["submitted_at"] == 5


def test_an_explicit_null_id_is_replaced() -> None:
    item = from_json(b'{"id": null, "op": "max", "data": [3], "args": {}}', 100, NOW)
    fields, data = decoded(item)
    assert fields["id"] == item.id and item.id and data == [3.0]


def test_parsed_objects_encode_to_the_same_contract() -> None:
    item = from_object({"op": "var", "data": [1, 2, 3], "args": {"ddof": 1},
                        "deadline": NOW + 5}, 100, NOW)
    fields, data = decoded(item)
    assert fields["args"] == {"ddof": 1} and fields["deadline"] == NOW + 5
    assert data == [1.0, 2.0, 3.0]
    with pytest.raises(InvalidRequest):
        from_object([1, 2], 100, NOW)


def test_fingerprints_ignore_spelling_but_not_content() -> None:
    base = fingerprint("sum", float64_bytes([1, 2]), {"a": 1, "b": 2}, None)
    assert base == fingerprint("sum", float64_bytes([1.0, 2.0]), {"b": 2, "a": 1}, None)
    single = np.array([1, 2], dtype=np.float32)
    assert base == fingerprint("sum", float64_bytes(single), {"a": 1, "b": 2}, None)
    for other in (fingerprint("max", float64_bytes([1, 2]), {"a": 1, "b": 2}, None),
                  fingerprint("sum", float64_bytes([1, 3]), {"a": 1, "b": 2}, None),
                  fingerprint("sum", float64_bytes([1, 2]), {"a": 1}, None),
                  fingerprint("sum", float64_bytes([1, 2]), {"a": 1, "b": 2}, 9.0)):
        assert other != base
    one = from_json(b'{"id": "x", "op": "sum", "data": [1, 2]}', 100, NOW)
    two = from_json(b'{"data": [1.0, 2.0], "op": "sum", "id": "x", "args": {}}', 100, NOW)
    assert one.fingerprint == two.fingerprint


def test_npy_rows_are_binary_records_the_worker_decodes() -> None:
    buffer = io.BytesIO()
    np.save(buffer, np.arange(6, dtype=np.int32).reshape(2, 3))
    rows, prefix = from_npy(buffer.getvalue(), "sum", {}, "p", 100, NOW)
    items = list(rows)
    assert prefix == "p" and [i.id for i in items] == ["p-0", "p-1"]  # type: ignore[union-attr]
    first = items[0]
    assert isinstance(first, Prepared)
    assert dict(first.headers)["content-type"].decode() == BINARY
    fields, data = decoded(first)
    assert fields["op"] == "sum" and fields["submitted_at"] == NOW and data == [0.0, 1.0, 2.0]
    assert first.fingerprint == fingerprint("sum", float64_bytes([0, 1, 2]), {}, None)


def test_npy_rows_carry_the_args_and_a_non_finite_row_is_rejected_alone() -> None:
    matrix = np.array([[1.0, 2.0, 3.0, 4.0], [1.0, np.nan, 3.0, 4.0], [0.0, 1.0, 1.0, 0.0]])
    buffer = io.BytesIO()
    np.save(buffer, matrix)
    rows, prefix = from_npy(buffer.getvalue(), "matmul", {"m": 2, "k": 1, "n": 2}, None, 100,
                            NOW)
    first, bad, last = list(rows)
    assert isinstance(bad, Rejected) and bad.index == 1
    assert bad.describe()["field"] == "data"
    for item, row in ((first, 0), (last, 2)):
        assert isinstance(item, Prepared) and item.id == f"{prefix}-{row}"
        fields, data = decoded(item)
        assert fields["args"] == {"m": 2, "k": 1, "n": 2} and fields["submitted_at"] == NOW
        assert fields["deadline"] is None and data == matrix[row].tolist()


def test_json_records_carry_the_json_content_type() -> None:
    item = from_json(b'{"op": "sum", "data": [1]}', 100, NOW)
    assert dict(item.headers)["content-type"].decode() == JSON
    assert orjson.loads(item.value)["op"] == "sum"


def test_limits_and_op_rules_name_the_field() -> None:
    with pytest.raises(InvalidRequest) as too_long:
        from_json(b'{"op": "sum", "data": [1, 2, 3]}', 2, NOW)
    assert too_long.value.fields[0]["field"] == "data"
    with pytest.raises(InvalidRequest) as bad_args:
        from_json(b'{"op": "std", "data": [1, 2], "args": {"ddof": -1}}', 10, NOW)
    assert bad_args.value.fields[0]["field"] == "args.ddof"
