"""The committed JSON Schema files match the models and describe real records."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from jsonschema import Draft202012Validator

import schemas
from consumer.processing import BatchContext, process_batch
from schemas.encoding import encode_json
from schemas.export import export_all
from schemas.messages import CalcRequest, DeadLetterHeaders, RequestFields
from tests.schemas.strategies import calc_requests, request_fields

SCHEMA_DIR = Path(schemas.__file__).parent / "jsonschema"
EXPORTED = export_all()


def committed(name: str) -> dict[str, Any]:
    """A committed schema file, parsed."""
    return json.loads((SCHEMA_DIR / name).read_text())  # type: ignore[no-any-return]


def validator(name: str) -> Draft202012Validator:
    """A validator for one committed schema."""
    return Draft202012Validator(committed(name))


def test_the_committed_files_are_exactly_the_exported_schemas() -> None:
    assert sorted(p.name for p in SCHEMA_DIR.glob("*.json")) == sorted(EXPORTED)
    for name, doc in EXPORTED.items():
        text = (SCHEMA_DIR / name).read_text()
        assert json.loads(text) == doc, f"{name} is out of date: run `make schema`"
        assert text == json.dumps(doc, indent=2, sort_keys=True) + "\n", \
            f"{name} is not formatted as `calcstream schema` writes it: run `make schema`"


@pytest.mark.parametrize("name", sorted(EXPORTED))
def test_each_committed_file_is_a_draft_2020_12_schema(name: str) -> None:
    doc = committed(name)
    Draft202012Validator.check_schema(doc)
    assert doc["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    assert doc["$id"].startswith("urn:calcstream:schema:v1:")
    assert doc["description"]
    # Records may carry headers of others (tracing, a producer's own); every value is strict.
    assert doc["additionalProperties"] is (name == "record-headers.json")


@dataclass(frozen=True)
class Record:
    """A consumed request record."""

    offset: int
    value: bytes
    key: bytes | None = None
    topic: str = "calc.requests"
    partition: int = 1
    timestamp: int = 1_767_225_600_000
    headers: tuple[tuple[str, bytes], ...] = ()


def _records() -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Results and dead-letter headers of a real batch, decoded."""
    values = [
        encode_json(CalcRequest(id="ok", op="matmul", data=[1, 2, 3, 4], args={"m": 2, "k": 1,
                                                                              "n": 2})),
        encode_json(CalcRequest(id="big", op="sum_of_squares", data=[1e300, 1e300])),
        encode_json(CalcRequest(id="sing", op="inv", data=[0.0])),
        encode_json(CalcRequest(id="late", op="sum", data=[1], deadline=1.0, submitted_at=0.5)),
        b'{"id":"bad","op":"nope","data":[1]}',
        b"{garbage",
    ]
    out = process_batch([Record(i, v) for i, v in enumerate(values)],
                        BatchContext(worker="w", group="g"), clock=lambda: 1_767_225_601.0)
    results = [orjson.loads(r.value) for r in out.results]
    assert {r["status"] for r in results} == {"ok", "error", "expired"}
    dead = [DeadLetterHeaders.from_headers(d.headers).model_dump(mode="json")
            for d in out.dead_letters]
    assert {d["stage"] for d in dead} == {"decode", "validate"}
    return results, dead


RESULTS, DEAD_LETTERS = _records()


def test_request_schema_accepts_requests_and_rejects_broken_ones() -> None:
    check = validator("request.json")
    full = orjson.loads(encode_json(CalcRequest(
        id="r-1", op="var", data=[1.0, 2.5], args={"ddof": 1}, deadline=2e9, submitted_at=1e9)))
    assert check.is_valid(full)
    assert check.is_valid({"id": "r-1", "op": "sum", "data": [1, -2.5e10]})
    assert check.is_valid({**full, "schema_version": 1})
    for bad in [
        {"id": "r-1", "op": "sum"},
        {"id": "r-1", "op": "sum", "data": []},
        {"id": "r-1", "op": "sum", "data": ["1"]},
        {"id": "r 1", "op": "sum", "data": [1]},
        {"id": "r-1", "op": "", "data": [1]},
        {"id": "r-1", "op": "sum", "data": [1], "extra": True},
        {**full, "schema_version": 2},
        {**full, "args": [1]},
    ]:
        assert not check.is_valid(bad), bad


def test_binary_metadata_schema_accepts_metadata_and_rejects_data() -> None:
    check = validator("request-binary-metadata.json")
    assert check.is_valid({"id": "r-1", "op": "matmul", "args": {"m": 1, "k": 1, "n": 1}})
    assert not check.is_valid({"id": "r-1", "op": "sum", "data": [1.0]})
    assert not check.is_valid({"op": "sum"})


def test_result_schema_accepts_real_results_and_rejects_broken_ones() -> None:
    check = validator("result.json")
    for result in RESULTS:
        assert check.is_valid(result), list(check.iter_errors(result))
    assert any(r["result"] == "Infinity" for r in RESULTS)
    ok = next(r for r in RESULTS if r["status"] == "ok")
    for bad in [{**ok, "status": "done"}, {**ok, "batch_size": 0}, {**ok, "error": {"code": "x"}},
                {k: v for k, v in ok.items() if k != "worker"}, {**ok, "extra": 1}]:
        assert not check.is_valid(bad), bad


def test_dead_letter_schema_accepts_real_headers_and_rejects_broken_ones() -> None:
    check = validator("dead-letter-headers.json")
    for headers in DEAD_LETTERS:
        assert check.is_valid(headers), list(check.iter_errors(headers))
    one = DEAD_LETTERS[0]
    for bad in [{**one, "stage": "publish"}, {k: v for k, v in one.items() if k != "error_class"},
                {**one, "original_offset": "41"}]:
        assert not check.is_valid(bad), bad


@settings(max_examples=40, deadline=None)
@given(request=calc_requests())
def test_every_valid_request_satisfies_the_schema(request: CalcRequest) -> None:
    assert validator("request.json").is_valid(orjson.loads(encode_json(request)))
    assert validator("request.json").is_valid(request.model_dump(mode="json"))


@settings(max_examples=40, deadline=None)
@given(fields=request_fields())
def test_every_valid_metadata_satisfies_the_schema(fields: RequestFields) -> None:
    assert validator("request-binary-metadata.json").is_valid(fields.model_dump(mode="json"))


def test_exported_schemas_name_their_topics() -> None:
    assert "calc.requests" in EXPORTED["request.json"]["description"]
    assert "calc.results" in EXPORTED["result.json"]["description"]
    assert "calc.dlq" in EXPORTED["dead-letter-headers.json"]["description"]


def test_the_record_headers_schema_names_what_the_services_read() -> None:
    from schemas.encoding import (
        CONTENT_TYPE_HEADER,
        CONTENT_TYPES,
        RESULT_BINARY,
        RESULT_TYPE_HEADER,
    )
    from schemas.messages import (
        REPLY_PARTITION_HEADER,
        TENANT_HEADER,
        TRACEPARENT_HEADER,
        TRACESTATE_HEADER,
        RecordHeaders,
    )

    props = RecordHeaders.model_json_schema()["properties"]
    assert set(props) == {CONTENT_TYPE_HEADER, TENANT_HEADER, TRACEPARENT_HEADER,
                          TRACESTATE_HEADER, REPLY_PARTITION_HEADER, RESULT_TYPE_HEADER}
    assert set(props[CONTENT_TYPE_HEADER]["anyOf"][0]["enum"]) == {*CONTENT_TYPES,
                                                                    RESULT_BINARY}
    schema = Draft202012Validator(export_all()["record-headers.json"])
    assert schema.is_valid({"tenant": "acme", "content-type": CONTENT_TYPES[1]})
    assert not schema.is_valid({"tenant": "a b"})
    assert schema.is_valid(
        {"traceparent": "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"})
    assert not schema.is_valid({"traceparent": "00-4bf92f35-00f067aa0ba902b7-01"})
    assert schema.is_valid({"reply-partition": "11"})
    assert not schema.is_valid({"reply-partition": "-1"})
    assert schema.is_valid({"result-type": RESULT_BINARY})
    assert not schema.is_valid({"result-type": "application/x-npy"})
