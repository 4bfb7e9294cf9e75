"""The compute step without a broker: plain records in, result and dead-letter records out."""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import Any

import numpy as np
import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from consumer import ops
from consumer.cache import LruCache
from consumer.processing import BatchContext, BatchOutput, process_batch
from schemas.encoding import (
    BINARY,
    CONTENT_TYPE_HEADER,
    JSON,
    RESULT_BINARY,
    RESULT_TYPE_HEADER,
    encode_binary,
    result_array,
    result_to_json,
)
from schemas.messages import SCHEMA_VERSION, CalcResult, DeadLetterHeaders, ErrorInfo, RequestFields
from tests.consumer.op_cases import batches, case

NOW = 1_767_225_600.0
CTX = BatchContext(worker="worker-1", group="workers")
TOPIC = "calc.requests"
BINARY_HEADERS = ((CONTENT_TYPE_HEADER, BINARY.encode()),)


@dataclass(frozen=True)
class Record:
    """A consumed record as the compute step sees it (the fields aiokafka's record has)."""

    key: bytes | None
    value: bytes | None
    headers: tuple[tuple[str, bytes], ...] = ()
    topic: str = TOPIC
    partition: int = 2
    offset: int = 7
    timestamp: int = int((NOW - 0.25) * 1000)


def json_record(request_id: str, op: str, data: Any, offset: int = 7, **fields: Any) -> Record:
    """A JSON request record keyed by its id."""
    doc = {"id": request_id, "op": op, "data": np.asarray(data, dtype=float).tolist(), **fields}
    return Record(request_id.encode(), orjson.dumps(doc), offset=offset)


def binary_record(request_id: str, op: str, data: Any, offset: int = 7, **fields: Any) -> Record:
    """A binary request record keyed by its id."""
    value = encode_binary(RequestFields(id=request_id, op=op, **fields), data)
    return Record(request_id.encode(), value, BINARY_HEADERS, offset=offset)


def frame(meta: bytes, body: bytes = b"", length: int | None = None) -> bytes:
    """A binary frame built by hand, so it can be broken on purpose."""
    return struct.pack("<I", len(meta) if length is None else length) + meta + body


def run(*records: Record) -> BatchOutput:
    """``process_batch`` at the fixed time NOW."""
    return process_batch(records, CTX, clock=lambda: NOW)


def results(out: BatchOutput) -> dict[str, CalcResult]:
    """Every result, validated against the contract, by id (keys must be the ids)."""
    by_id: dict[str, CalcResult] = {}
    for key, value, *_ in out.results:
        result = CalcResult.model_validate_json(value)
        assert key == result.id.encode()
        assert result.id not in by_id, f"two results for {result.id}"
        assert result.worker == CTX.worker
        by_id[result.id] = result
    statuses: dict[str, int] = {}
    for result in by_id.values():
        statuses[result.status] = statuses.get(result.status, 0) + 1
    assert out.statuses == statuses
    return by_id


KNOWN: dict[str, tuple[list[float], dict[str, Any], Any]] = {
    "sum_of_squares": ([1, 2, 3], {}, 14.0),
    "sum": ([1, 2, 3.5], {}, 6.5),
    "mean": ([1, 2, 3, 4], {}, 2.5),
    "min": ([3, -1, 2], {}, -1.0),
    "max": ([3, -1, 2], {}, 3.0),
    "l2_norm": ([3, 4], {}, 5.0),
    "var": ([1, 2, 3, 4], {"ddof": 1}, 5 / 3),
    "std": ([2, 4, 4, 4, 5, 5, 7, 9], {}, 2.0),
    "dot": ([1, 2, 3, 4, 5, 6], {}, 32.0),
    "matmul": ([1, 2, 3, 4, 5, 6, 7, 8], {"m": 2, "k": 2, "n": 2}, [[19.0, 22.0], [43.0, 50.0]]),
    "inv": ([4, 7, 2, 6], {}, [[0.6, -0.7], [-0.2, 0.4]]),
}


def test_each_op_answers_json_and_binary_requests() -> None:
    records = []
    for i, (name, (data, args, _)) in enumerate(KNOWN.items()):
        records.append(json_record(f"j-{name}", name, data, offset=2 * i, args=args))
        records.append(binary_record(f"b-{name}", name, data, offset=2 * i + 1, args=args))

    out = run(*records)

    got = results(out)
    assert out.dead_letters == []
    assert out.statuses == {"ok": len(records)}
    for name, (_, _, want) in KNOWN.items():
        for request_id in (f"j-{name}", f"b-{name}"):
            result = got[request_id]
            assert result.status == "ok" and result.error is None and result.op == name
            np.testing.assert_allclose(np.asarray(result.result), want, rtol=1e-12)
            assert result.batch_size == len(records)
            assert result.enqueued_at == pytest.approx(NOW - 0.25)
            assert result.queue_ms == pytest.approx(250.0)
            assert result.completed_at == NOW
            assert result.cached is False


def test_the_result_documents_are_the_contract_for_every_op_and_status() -> None:
    """The worker writes result documents with orjson, not through ``CalcResult``: each one,
    of every op and every status, must still be exactly the model's fields and validate."""
    records = [json_record(f"ok-{name}", name, data, offset=i, args=args)
               for i, (name, (data, args, _)) in enumerate(KNOWN.items())]
    records += [json_record("error", "inv", np.zeros(4), offset=len(records)),
                json_record("expired", "sum", [1.0], offset=len(records) + 1,
                            deadline=NOW - 1)]
    out = run(*records)
    assert out.statuses == {"ok": len(KNOWN), "error": 1, "expired": 1}
    for _, value, *_ in out.results:
        doc = orjson.loads(value)
        assert set(doc) == set(CalcResult.model_fields), set(doc) ^ set(CalcResult.model_fields)
        assert doc["schema_version"] == SCHEMA_VERSION
        assert CalcResult.model_validate(doc).model_dump(mode="json") == doc


def test_timing_fields_come_from_the_record_and_the_clock() -> None:
    late = Record(b"a", orjson.dumps({"id": "a", "op": "sum", "data": [1], "submitted_at": 5.0}),
                  timestamp=int((NOW + 3) * 1000))  # broker clock ahead of ours
    ticks = iter([NOW, NOW + 0.5])
    out = process_batch([late], CTX, clock=lambda: next(ticks))
    (result,) = results(out).values()
    assert result.submitted_at == 5.0
    assert result.queue_ms == 0.0
    assert result.completed_at == NOW + 0.5
    assert result.compute_ms == pytest.approx(500.0) == out.compute_ms


def test_an_empty_batch_gives_nothing() -> None:
    out = run()
    assert (out.results, out.dead_letters, out.statuses) == ([], [], {})


@settings(max_examples=25, deadline=None)
@given(data=st.data())
def test_a_mixed_batch_matches_each_reference(data: st.DataObject) -> None:
    names = data.draw(st.lists(st.sampled_from(sorted(ops.REGISTRY)), min_size=1, max_size=5,
                               unique=True), label="ops")
    requests = [(name, x, raw) for name in names
                for x, raw in data.draw(batches(name, max_size=8), label=name)]
    order = data.draw(st.permutations(range(len(requests))), label="order")
    binary = data.draw(st.lists(st.booleans(), min_size=len(requests), max_size=len(requests)))
    records = [(binary_record if binary[i] else json_record)(f"r{i}", requests[i][0],
                                                             requests[i][1], args=requests[i][2])
               for i in order]

    got = results(run(*records))

    assert len(got) == len(requests)
    for i, (name, x, raw) in enumerate(requests):
        op = ops.REGISTRY[name]
        args = op.parse(x.size, raw)
        result = got[f"r{i}"]
        assert result.status == "ok", result
        value = np.asarray(result.result) if isinstance(result.result, list) else result.result
        assert case(name).close(x, args, value, op.reference(x, args)), (name, x, raw, value)


def _json(doc: dict[str, Any]) -> bytes:
    return orjson.dumps(doc)


META = b'{"id":"b-1","op":"sum"}'
# (label, record, stage, error class, request id that can be read from it)
POISON: list[tuple[str, Record, str, str, str | None]] = [
    ("not json", Record(b"p-json", b"{not json"), "decode", "DecodeError", "p-json"),
    ("not json, no key", Record(None, b"\xff\xfe\x00garbage"), "decode", "DecodeError", None),
    ("no value", Record(b"p-null", None), "decode", "DecodeError", "p-null"),
    ("not an object", Record(b"p-list", b"[1, 2]"), "validate", "ValidationError", "p-list"),
    ("wrong field", Record(b"k", _json({"id": "p-schema", "op": "sum", "values": [1]})),
     "validate", "ValidationError", "p-schema"),
    ("extra field", Record(None, _json({"id": "p-x", "op": "sum", "data": [1], "x": 1})),
     "validate", "ValidationError", "p-x"),
    ("future version", Record(None, _json({"schema_version": 2, "id": "p-v", "op": "sum",
                                           "data": [1]})), "validate", "ValidationError", "p-v"),
    ("empty data", Record(None, _json({"id": "p-e", "op": "sum", "data": []})),
     "validate", "ValidationError", "p-e"),
    ("NaN in JSON", Record(None, b'{"id":"p-nan","op":"sum","data":[1,NaN]}'),
     "validate", "ValidationError", "p-nan"),
    ("bad id, no key", Record(None, _json({"id": "a b", "op": "sum", "data": [1]})),
     "validate", "ValidationError", None),
    ("unknown op", Record(None, _json({"id": "p-op", "op": "nope", "data": [1]})),
     "validate", "UnknownOpError", "p-op"),
    ("odd dot", Record(None, _json({"id": "p-dot", "op": "dot", "data": [1, 2, 3]})),
     "validate", "OpInputError", "p-dot"),
    ("matmul without args", Record(None, _json({"id": "p-mm", "op": "matmul", "data": [1, 2]})),
     "validate", "OpInputError", "p-mm"),
    ("matmul wrong length", Record(None, _json({"id": "p-ml", "op": "matmul", "data": [1, 2],
                                                "args": {"m": 1, "k": 1, "n": 2}})),
     "validate", "OpInputError", "p-ml"),
    ("ddof too large", Record(None, _json({"id": "p-dd", "op": "var", "data": [1, 2],
                                           "args": {"ddof": 2}})),
     "validate", "OpInputError", "p-dd"),
    ("NaN in binary", Record(b"b-nan", frame(META, np.array([1.0, np.nan]).tobytes()),
                             BINARY_HEADERS), "validate", "ValidationError", "b-nan"),
    ("Infinity in binary", Record(b"b-inf", frame(META, np.array([-np.inf]).tobytes()),
                                  BINARY_HEADERS), "validate", "ValidationError", "b-inf"),
    ("binary, no length", Record(b"b-short", b"\x01\x00", BINARY_HEADERS),
     "decode", "DecodeError", "b-short"),
    ("binary, length past the end", Record(b"b-len", frame(META, b"\0" * 8, 999), BINARY_HEADERS),
     "decode", "DecodeError", "b-len"),
    ("binary, ragged body", Record(b"b-rag", frame(META, b"\0" * 9), BINARY_HEADERS),
     "decode", "DecodeError", "b-rag"),
    ("binary, no body", Record(b"b-empty", frame(META), BINARY_HEADERS),
     "decode", "DecodeError", "b-empty"),
    ("binary, metadata not JSON", Record(b"b-meta", frame(b"{id", b"\0" * 8), BINARY_HEADERS),
     "decode", "DecodeError", "b-meta"),
    ("binary, metadata without id", Record(b"b-noid", frame(b'{"op":"sum"}', b"\0" * 8),
                                           BINARY_HEADERS), "validate", "ValidationError",
     "b-noid"),
    ("binary, unknown op", Record(b"b-op", frame(b'{"id":"b-op","op":"nope"}', b"\0" * 8),
                                  BINARY_HEADERS), "validate", "UnknownOpError", "b-op"),
    ("unknown content type", Record(b"p-ct", b"1,2,3", ((CONTENT_TYPE_HEADER, b"text/csv"),)),
     "decode", "DecodeError", "p-ct"),
    ("null content type", Record(b"p-ctn", b"{}", ((CONTENT_TYPE_HEADER, None),)),  # type: ignore[arg-type]
     "decode", "DecodeError", "p-ctn"),
]


@pytest.mark.parametrize(("label", "record", "stage", "error_class", "request_id"), POISON,
                         ids=[p[0] for p in POISON])
def test_a_bad_record_is_dead_lettered_and_answered_when_its_id_is_readable(
    label: str, record: Record, stage: str, error_class: str, request_id: str | None
) -> None:
    poison = Record(record.key, record.value, (("traceparent", b"00-abc"), *record.headers),
                    partition=3, offset=41, timestamp=1_767_225_599_000)
    good = json_record("good", "sum", [1, 2], offset=42)

    out = run(poison, good)

    (dead,) = out.dead_letters
    assert (dead.key, dead.value) == (poison.key, poison.value)
    assert dead.headers[: len(poison.headers)] == list(poison.headers)
    assert all(k.startswith("dlq.") for k, _ in dead.headers[len(poison.headers):])
    headers = DeadLetterHeaders.from_headers(dead.headers)
    assert headers.model_dump() == {
        "original_topic": TOPIC, "original_partition": 3, "original_offset": 41,
        "original_timestamp": 1_767_225_599_000, "consumer_group": CTX.group,
        "error_class": error_class, "error_message": headers.error_message, "stage": stage,
        "request_id": request_id, "worker": CTX.worker, "original_value_bytes": None,
    }
    assert headers.error_message.strip()

    got = results(out)
    assert got.pop("good").result == 3.0
    if request_id is None:
        assert got == {}
    else:
        error = got[request_id]
        assert error.status == "error" and error.result is None
        assert error.error is not None and error.error.code == "invalid_request"
        assert error.error.message.startswith(f"{stage}: ")
        assert error.batch_size == 2
        assert error.enqueued_at == 1_767_225_599.0


def test_error_results_name_the_op_when_it_can_be_read() -> None:
    out = run(Record(None, _json({"id": "p", "op": "dot", "data": [1]})),
              Record(b"q", b"{not json"))
    got = results(out)
    assert (got["p"].op, got["q"].op) == ("dot", "")
    assert "data: dot needs x then y of equal length" in got["p"].error.message  # type: ignore[union-attr]


def test_a_singular_matrix_fails_alone() -> None:
    matrices = {"m0": np.eye(3) * 2, "m1": np.ones((3, 3)), "m2": np.diag([1.0, 2.0, 4.0]),
                "m3": np.zeros((1, 1)), "m4": np.array([[2.0]])}
    out = run(*(json_record(k, "inv", m.ravel(), offset=i)
                for i, (k, m) in enumerate(matrices.items())))
    got = results(out)
    assert out.dead_letters == []
    assert out.statuses == {"ok": 3, "error": 2}
    for singular in ("m1", "m3"):
        assert got[singular].status == "error" and got[singular].result is None
        assert got[singular].error is not None and got[singular].error.code == "singular_matrix"
    for k in ("m0", "m2", "m4"):
        assert got[k].status == "ok" and got[k].error is None
        np.testing.assert_allclose(got[k].result, np.linalg.inv(matrices[k]), rtol=1e-15)


def _fragile(x: Any, _: Any) -> float:
    if x[0] < 0:
        raise ValueError("negative input")
    return float(x.sum())


@pytest.mark.parametrize("kernel", [
    lambda arrays, args: [_fragile(x, a) for x, a in zip(arrays, args, strict=True)],
    lambda arrays, args: [float(x.sum()) for x in arrays[1:]],  # one answer short
], ids=["kernel raises", "kernel miscounts"])
def test_an_op_that_fails_for_one_request_fails_that_request_alone(
    monkeypatch: pytest.MonkeyPatch, kernel: Any
) -> None:
    fragile = ops.Op("fragile", "Test op.", batch=kernel, reference=_fragile)
    monkeypatch.setitem(ops.REGISTRY, "fragile", fragile)
    out = run(json_record("a", "fragile", [1.0, 2.0]), json_record("b", "fragile", [-1.0]),
              json_record("c", "fragile", [3.0]), json_record("d", "sum", [-1.0]))
    got = results(out)
    assert out.dead_letters == []
    assert out.statuses == {"ok": 3, "error": 1}
    assert (got["a"].result, got["c"].result, got["d"].result) == (3.0, 3.0, -1.0)
    assert got["b"].status == "error" and got["b"].result is None
    assert got["b"].error == ErrorInfo(code="compute_error", message="ValueError: negative input")


def test_a_request_past_its_deadline_expires_without_being_computed() -> None:
    # Computing the singular matrix would answer 'error'; 'expired' shows it never ran.
    expired = json_record("late", "inv", np.ones(4), deadline=NOW - 0.001, submitted_at=NOW - 2)
    expired_binary = binary_record("late-b", "sum", [1.0], deadline=NOW - 10)
    on_time = json_record("on-time", "sum", [1.0, 2.0], deadline=NOW + 1)
    exactly = json_record("exactly", "sum", [1.0], deadline=NOW)

    out = run(expired, expired_binary, on_time, exactly)

    got = results(out)
    assert out.statuses == {"expired": 2, "ok": 2}
    for late in ("late", "late-b"):
        result = got[late]
        assert result.status == "expired" and result.result is None
        assert result.error is not None and result.error.code == "deadline_exceeded"
        assert result.compute_ms == 0.0 and result.completed_at == NOW
    assert got["late"].submitted_at == NOW - 2
    assert got["late"].op == "inv"
    assert got["on-time"].result == 3.0 and got["exactly"].result == 1.0


MATMUL_2x1x2 = {"m": 2, "k": 1, "n": 2}
MATMUL_2x2 = {"m": 2, "k": 2, "n": 2}


@pytest.mark.parametrize(
    ("op", "args", "requests", "want"),
    [
        ("sum_of_squares", {}, [[1e300, 1e300], [1.0, 2.0]], ["Infinity", 5.0]),
        ("sum_of_squares", {}, [[1e300, 1e300]], ["Infinity"]),
        ("sum", {}, [[-1e308, -1e308], [1e308, 1e308, 1.0]], ["-Infinity", "Infinity"]),
        ("mean", {}, [[1e308, 1e308], [2.0, 4.0]], ["Infinity", 3.0]),
        ("l2_norm", {}, [[1e200, 1e200], [3.0, 4.0]], ["Infinity", 5.0]),
        ("var", {}, [[1e308, -1e308], [1.0, 3.0]], ["Infinity", 1.0]),
        ("std", {}, [[1e308, -1e308], [1.0, 3.0]], ["Infinity", 1.0]),
        ("dot", {}, [[1e200, 1e200, 1e200, -1e200]], ["NaN"]),
        ("matmul", MATMUL_2x1x2, [[1.0, 1e200, 2.0, 1e200]],
         [[[2.0, 1e200], [2e200, "Infinity"]]]),
        ("matmul", MATMUL_2x1x2, [[1.0, 1e200, 2.0, 1e200], [-1.0, 1e200, 2.0, 1e200]],
         [[[2.0, 1e200], [2e200, "Infinity"]], [[-2.0, -1e200], [2e200, "Infinity"]]]),
        ("inv", {}, [[1e-320]], [[["Infinity"]]]),
    ],
)
def test_non_finite_results_are_written_as_strings(
    op: str, args: dict[str, Any], requests: list[list[float]], want: list[Any]
) -> None:
    out = run(*(json_record(f"r{i}", op, data, args=args) for i, data in enumerate(requests)))
    got = results(out)
    assert [got[f"r{i}"].result for i in range(len(requests))] == want
    assert out.statuses == {"ok": len(requests)}


def test_results_are_strict_json() -> None:
    out = run(json_record("a", "matmul", [1.0, 1e200, 2.0, 1e200], args=MATMUL_2x1x2),
              json_record("b", "dot", [1e200, 1e200, 1e200, -1e200]),
              json_record("c", "sum", [1e308, 1e308]))
    for _, value, *_ in out.results:
        orjson.loads(value)  # orjson, like JSON, has no NaN or Infinity tokens
        assert b"NaN" not in value.replace(b'"NaN"', b"")
        assert b"Infinity" not in value.replace(b'"Infinity"', b"")


def test_content_type_json_may_be_explicit() -> None:
    record = Record(b"a", _json({"id": "a", "op": "max", "data": [1, 5]}),
                    ((CONTENT_TYPE_HEADER.upper(), f"{JSON}; charset=utf-8".encode()),))
    assert results(run(record))["a"].result == 5.0


def test_a_result_carries_back_the_requests_tenant_and_trace_context() -> None:
    parent = b"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
    carried = (("tenant", b"acme"), ("traceparent", parent), ("tracestate", b"k=v"))
    traced = Record(b"t-1", orjson.dumps({"id": "t-1", "op": "sum", "data": [1.0]}),
                    (*carried, ("x-other", b"1")))
    bad = Record(b"t-2", b"{not json", (("traceparent", parent),))
    out = run(traced, bad, json_record("t-3", "sum", [1.0]))
    headers = {r.key: r.headers for r in out.results}
    assert headers[b"t-1"] == list(carried)
    assert headers[b"t-3"] is None
    assert out.dead_letters[0].headers[0] == ("traceparent", parent)


def test_a_result_goes_to_the_partition_its_request_names() -> None:
    from schemas.messages import REPLY_PARTITION_HEADER, TENANT_HEADER

    routed = Record(b"r", orjson.dumps({"id": "r", "op": "sum", "data": [1, 2]}),
                    ((REPLY_PARTITION_HEADER, b"3"), (TENANT_HEADER, b"acme")))
    bad = Record(b"b", orjson.dumps({"id": "b", "op": "nope", "data": [1]}),
                 ((REPLY_PARTITION_HEADER, b"1"),))
    garbled = Record(b"g", orjson.dumps({"id": "g", "op": "sum", "data": [1]}),
                     ((REPLY_PARTITION_HEADER, b"-1"),))
    plain = json_record("p", "sum", [1])
    out = run(routed, bad, garbled, plain)
    by_key = {r.key: r for r in out.results}
    assert by_key[b"r"].partition == 3 and by_key[b"r"].headers == [(TENANT_HEADER, b"acme")]
    assert by_key[b"b"].partition == 1  # an error result goes where its request asked too
    assert by_key[b"g"].partition is None and by_key[b"p"].partition is None  # by key


BINARY_RESULT = ((RESULT_TYPE_HEADER, RESULT_BINARY.encode()),)


def test_a_request_that_asks_for_a_binary_result_gets_its_values_as_float64() -> None:
    a = np.array([[1.0, 2.0], [3.0, 4.0]])
    asked = Record(b"m", binary_record("m", "matmul", [*a.ravel(), 1, 0, 0, 1],
                                       args=MATMUL_2x2).value,
                   (*BINARY_HEADERS, *BINARY_RESULT, ("tenant", b"acme")))
    huge = Record(b"s", json_record("s", "sum", [1e308, 1e308]).value, BINARY_RESULT)
    failing = Record(b"f", json_record("f", "inv", [0.0, 0.0, 0.0, 0.0]).value, BINARY_RESULT)
    out = run(asked, huge, failing, json_record("j", "sum", [1.0]))
    by_key = {r.key: r for r in out.results}
    meta, values = result_array(by_key[b"m"].value)
    assert np.array_equal(values, a) and meta["shape"] == [2, 2]
    assert meta["id"] == "m" and meta["status"] == "ok" and meta["worker"] == CTX.worker
    assert by_key[b"m"].headers == [("tenant", b"acme"), (CONTENT_TYPE_HEADER,
                                                          RESULT_BINARY.encode())]
    meta, values = result_array(by_key[b"s"].value)
    assert values.shape == () and values == np.inf  # no "Infinity" string in binary
    # Without values, or without asking, a result stays JSON.
    assert orjson.loads(by_key[b"f"].value)["status"] == "error" and by_key[b"f"].headers is None
    assert orjson.loads(by_key[b"j"].value)["result"] == 1.0
    # The JSON document of a binary result is what a JSON request gets.
    json_form = orjson.loads(result_to_json(by_key[b"m"].value))
    plain = results(run(json_record("m", "matmul", [*a.ravel(), 1, 0, 0, 1],
                                    args=MATMUL_2x2)))["m"]
    assert json_form["result"] == plain.result and CalcResult.model_validate(json_form)
    # Byte for byte, fields in the same order, for the same request in a batch of its own.
    (written,) = run(asked).results
    (as_json,) = run(json_record("m", "matmul", [*a.ravel(), 1, 0, 0, 1],
                                 args=MATMUL_2x2)).results
    assert result_to_json(written.value) == as_json.value


def test_a_cached_result_is_answered_in_the_encoding_each_request_asked_for() -> None:
    ctx = BatchContext("w", "g", cache=LruCache(100))
    data = [4.0, 7.0, 2.0, 6.0]
    first = Record(b"a", json_record("a", "inv", data).value, BINARY_RESULT)
    for record in (first, json_record("b", "inv", data),
                   Record(b"c", json_record("c", "inv", data).value, BINARY_RESULT)):
        (result,) = process_batch([record], ctx, clock=lambda: NOW).results
        expected = np.linalg.inv(np.reshape(data, (2, 2)))
        if record.key == b"b":
            assert np.allclose(orjson.loads(result.value)["result"], expected)
        else:
            meta, values = result_array(result.value)
            assert np.allclose(values, expected)
            assert meta["cached"] is (record.key == b"c")
