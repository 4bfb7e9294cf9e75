"""The wire models: frozen, closed to unknown fields, versioned; dead-letter headers round trip."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import BaseModel, ValidationError

from schemas import topics
from schemas.messages import (
    SCHEMA_VERSION,
    CalcRequest,
    CalcResult,
    DeadLetterHeaders,
    ErrorInfo,
    RequestFields,
    is_traceparent,
    result_headers,
)
from tests.schemas.strategies import IDS

REQUEST: dict[str, Any] = {"id": "r-1", "op": "sum", "data": [1.0, 2.0]}
RESULT: dict[str, Any] = {
    "id": "r-1", "status": "ok", "op": "sum", "result": 3.0, "worker": "w", "batch_size": 1,
    "enqueued_at": 1.0, "completed_at": 2.0, "queue_ms": 0.5, "compute_ms": 0.1,
}
DLQ: dict[str, Any] = {
    "original_topic": "calc.requests", "original_partition": 3, "original_offset": 41,
    "original_timestamp": 1_767_225_600_000, "consumer_group": "workers",
    "error_class": "DecodeError", "error_message": "not valid JSON", "stage": "decode",
    "request_id": "r-1", "worker": "w",
}
EXAMPLES: list[tuple[type[BaseModel], dict[str, Any]]] = [
    (CalcRequest, REQUEST),
    (RequestFields, {"id": "r-1", "op": "sum"}),
    (CalcResult, RESULT),
    (ErrorInfo, {"code": "singular_matrix", "message": "Singular matrix"}),
    (DeadLetterHeaders, DLQ),
]


@pytest.mark.parametrize(("model", "doc"), EXAMPLES, ids=[m.__name__ for m, _ in EXAMPLES])
def test_models_are_frozen_and_reject_unknown_fields(model: type[BaseModel],
                                                     doc: dict[str, Any]) -> None:
    instance = model.model_validate(doc)
    name = next(iter(doc))
    with pytest.raises(ValidationError, match="frozen"):
        setattr(instance, name, doc[name])
    with pytest.raises(ValidationError, match="extra"):
        model.model_validate({**doc, "surprise": 1})
    assert model.model_validate_json(instance.model_dump_json()) == instance


@pytest.mark.parametrize("model", [CalcRequest, RequestFields, CalcResult])
def test_schema_version_is_1_by_default_and_nothing_else(model: type[BaseModel]) -> None:
    doc = next(d for m, d in EXAMPLES if m is model)
    assert model.model_validate(doc).schema_version == SCHEMA_VERSION == 1  # type: ignore[attr-defined]
    with pytest.raises(ValidationError):
        model.model_validate({**doc, "schema_version": 2})


@settings(max_examples=50, deadline=None)
@given(request_id=IDS)
def test_ids_of_the_allowed_alphabet_are_accepted(request_id: str) -> None:
    assert CalcRequest.model_validate({**REQUEST, "id": request_id}).id == request_id


@pytest.mark.parametrize("request_id", ["", "a b", "a/b", "é", "a\n", "x" * 129, 7])
def test_other_ids_are_rejected(request_id: object) -> None:
    with pytest.raises(ValidationError):
        CalcRequest.model_validate({**REQUEST, "id": request_id})
    with pytest.raises(ValidationError):
        CalcResult.model_validate({**RESULT, "id": request_id})


@pytest.mark.parametrize("data", [[], [float("nan")], [1.0, float("inf")], [-float("inf")],
                                  "1,2", None])
def test_request_data_is_a_non_empty_list_of_finite_numbers(data: object) -> None:
    with pytest.raises(ValidationError):
        CalcRequest.model_validate({**REQUEST, "data": data})


def test_request_defaults_and_optional_fields() -> None:
    request = CalcRequest.model_validate({**REQUEST, "data": [1, 2]})
    assert request.data == [1.0, 2.0]
    assert (request.args, request.deadline, request.submitted_at) == ({}, None, None)
    with pytest.raises(ValidationError):
        CalcRequest.model_validate({**REQUEST, "op": "x" * 65})
    with pytest.raises(ValidationError):
        RequestFields.model_validate({"id": "a", "op": "sum", "data": [1.0]})


@pytest.mark.parametrize("value", [3.5, "Infinity", "NaN", [1.0, "-Infinity"], [[1.0], [2.0]],
                                   None])
def test_a_result_is_a_number_a_non_finite_string_or_a_nested_list(value: object) -> None:
    result = CalcResult.model_validate({**RESULT, "result": value})
    assert result.result == value
    assert CalcResult.model_validate_json(result.model_dump_json()) == result


@pytest.mark.parametrize(("field", "value"), [("status", "done"), ("batch_size", 0),
                                              ("worker", None), ("error", {"code": "x"})])
def test_results_break_the_contract(field: str, value: object) -> None:
    with pytest.raises(ValidationError):
        CalcResult.model_validate({**RESULT, field: value})


def test_an_error_result_carries_code_and_message() -> None:
    result = CalcResult.model_validate(
        {**RESULT, "status": "error", "result": None,
         "error": {"code": "singular_matrix", "message": "Singular matrix"}})
    assert result.error == ErrorInfo(code="singular_matrix", message="Singular matrix")
    assert result.cached is False and result.submitted_at is None


def test_dead_letter_headers_are_prefixed_utf8_text() -> None:
    headers = DeadLetterHeaders.model_validate({**DLQ, "error_message": "bad ünïcode ✓"})
    encoded = headers.to_headers()
    assert dict(encoded) == {
        "dlq.original_topic": b"calc.requests", "dlq.original_partition": b"3",
        "dlq.original_offset": b"41", "dlq.original_timestamp": b"1767225600000",
        "dlq.consumer_group": b"workers", "dlq.error_class": b"DecodeError",
        "dlq.error_message": "bad ünïcode ✓".encode(), "dlq.stage": b"decode",
        "dlq.request_id": b"r-1", "dlq.worker": b"w",
    }
    assert DeadLetterHeaders.from_headers(encoded) == headers


def test_dead_letter_headers_without_a_request_id_omit_it() -> None:
    headers = DeadLetterHeaders.model_validate({**DLQ, "request_id": None})
    encoded = headers.to_headers()
    assert "dlq.request_id" not in dict(encoded)
    assert DeadLetterHeaders.from_headers(encoded) == headers


def test_from_headers_ignores_other_headers_and_needs_every_dlq_one() -> None:
    encoded = DeadLetterHeaders.model_validate(DLQ).to_headers()
    mixed = [("content-type", b"application/json"), ("traceparent", b"00-1"), *encoded]
    assert DeadLetterHeaders.from_headers(mixed) == DeadLetterHeaders.model_validate(DLQ)
    with pytest.raises(ValidationError):
        DeadLetterHeaders.from_headers([h for h in encoded if h[0] != "dlq.stage"])
    with pytest.raises(ValidationError):
        DeadLetterHeaders.from_headers([*encoded[:-1], ("dlq.unknown", b"x")])


@settings(max_examples=60, deadline=None)
@given(headers=st.builds(
    DeadLetterHeaders,
    original_topic=st.text(min_size=1), original_partition=st.integers(0, 2**31 - 1),
    original_offset=st.integers(0, 2**63 - 1), original_timestamp=st.integers(-1, 2**63 - 1),
    consumer_group=st.text(), error_class=st.text(), error_message=st.text(),
    stage=st.sampled_from(["decode", "validate", "compute"]), request_id=st.none() | IDS,
    worker=st.text(),
))
def test_dead_letter_headers_round_trip(headers: DeadLetterHeaders) -> None:
    encoded = headers.to_headers()
    assert all(k.startswith("dlq.") and isinstance(v, bytes) for k, v in encoded)
    assert DeadLetterHeaders.from_headers(encoded) == headers


def test_topics_default_to_the_documented_names() -> None:
    default = topics.Topics()
    assert default.all() == ("calc.requests", "calc.results", "calc.dlq")
    assert topics.Topics("a", "b", "c").all() == ("a", "b", "c")
    with pytest.raises(dataclasses.FrozenInstanceError):
        default.requests = "x"  # type: ignore[misc]


TRACEPARENT = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"


@pytest.mark.parametrize(("value", "valid"), [
    (TRACEPARENT, True),
    ("01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00-later-fields", True),
    ("ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01", False),
    ("00-00000000000000000000000000000000-00f067aa0ba902b7-01", False),
    ("00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01", False),
    ("00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01", False),
    ("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7", False),
    ("", False),
])
def test_a_traceparent_is_w3c_trace_context(value: str, valid: bool) -> None:
    assert is_traceparent(value) is valid


def test_a_result_carries_back_the_tenant_and_trace_headers_only() -> None:
    request = [("content-type", b"application/vnd.calcstream.request+binary"),
               ("tenant", b"acme"), ("traceparent", TRACEPARENT.encode()),
               ("tracestate", b"k=v"), ("x-other", b"1")]
    assert result_headers(request) == [("tenant", b"acme"),
                                       ("traceparent", TRACEPARENT.encode()),
                                       ("tracestate", b"k=v")]
    assert result_headers([("content-type", b"application/json")]) is None
