"""The checker on hand-built record lists: it must count what the topics say, nothing else."""

from __future__ import annotations

import math
from typing import Any

import orjson
import pytest

from schemas.messages import DeadLetterHeaders
from tests.faults.checker import Rec, check, request_identity


def req(rid: str, partition: int, offset: int, ts: int) -> Rec:
    value = orjson.dumps({"id": rid, "op": "sum", "data": [1.0]})
    return Rec(partition, offset, ts, rid.encode(), value)


def res(rid: str, ts: int, offset: int = 0, **overrides: Any) -> Rec:
    doc = {"schema_version": 1, "id": rid, "status": "ok", "op": "sum", "result": 1.0,
           "error": None, "worker": "w", "batch_size": 1, "submitted_at": None,
           "enqueued_at": 0.0, "completed_at": 0.0, "queue_ms": 0.0, "compute_ms": 0.0,
           "cached": False, **overrides}
    return Rec(0, offset, ts, rid.encode(), orjson.dumps(doc))


def dead(partition: int, offset: int, ts: int, request_id: str | None = None) -> Rec:
    headers = DeadLetterHeaders(
        original_topic="calc.requests", original_partition=partition, original_offset=offset,
        original_timestamp=0, consumer_group="g", error_class="DecodeError",
        error_message="bad", stage="decode", request_id=request_id, worker="w",
    ).to_headers()
    return Rec(0, 0, ts, None, b"{not json", headers)


def test_every_request_answered_once_is_clean() -> None:
    requests = [req("a", 0, 0, 100), req("b", 1, 0, 110)]
    v = check(requests, [res("a", 150), res("b", 130)], [])
    assert (v.accepted, v.lost, v.unseen, v.duplicates, v.phantoms, v.invalid) == (
        2, [], [], 0, [], [])
    assert v.latency_ms == {"a": 50.0, "b": 20.0}
    assert v.percentile(100) == 50.0


def test_an_accepted_id_with_no_outcome_is_lost() -> None:
    v = check([req("a", 0, 0, 1), req("b", 0, 1, 2)], [res("a", 5)], [])
    assert v.lost == ["b"]
    assert v.unseen == []


def test_an_acked_id_missing_from_the_request_topic_is_unseen_and_lost() -> None:
    v = check([req("a", 0, 0, 1)], [res("a", 5)], [], acked={"a", "gone"})
    assert v.unseen == ["gone"]
    assert v.lost == ["gone"]
    assert v.accepted == 2


def test_extra_results_for_one_id_are_duplicates() -> None:
    v = check([req("a", 0, 0, 1), req("b", 0, 1, 1)],
              [res("a", 5), res("a", 9, 1), res("a", 12, 2), res("b", 5, 3)], [])
    assert (v.duplicates, v.duplicated_ids, v.lost) == (2, 1, [])
    assert v.duplicate_ratio == 1.0
    assert v.latency_ms["a"] == 4.0, "latency runs to the first outcome"


def test_a_dead_letter_answers_the_record_it_points_at() -> None:
    poison = Rec(2, 7, 100, None, b"\xff\xfe")
    assert request_identity(poison) == "@2:7"
    v = check([poison, req("a", 2, 8, 100)], [res("a", 120)], [dead(2, 7, 130)])
    assert v.lost == []
    assert v.dead_letters == 1
    assert v.latency_ms["@2:7"] == 30.0


def test_a_dead_letter_for_a_position_nobody_wrote_is_a_phantom() -> None:
    v = check([req("a", 0, 0, 1)], [res("a", 2)], [dead(3, 99, 5)])
    assert v.phantoms == ["dead letter for (3, 99)"]


def test_results_for_unknown_ids_and_broken_results_are_reported() -> None:
    broken = Rec(0, 5, 9, b"a", b'{"id": "a"}')
    v = check([req("a", 0, 0, 1)], [res("a", 2), res("zz", 3, 1), broken], [])
    assert v.phantoms == ["zz"]
    assert len(v.invalid) == 1 and "0:5" in v.invalid[0]


def test_a_result_keyed_differently_from_its_id_is_invalid() -> None:
    wrong_key = Rec(0, 0, 2, b"other", res("a", 2).value)
    v = check([req("a", 0, 0, 1)], [wrong_key], [])
    assert v.lost == [] and "key" in v.invalid[0]


def test_a_dead_letter_without_its_headers_is_invalid() -> None:
    v = check([req("a", 0, 0, 1)], [], [Rec(0, 0, 3, b"a", b"x", [("dlq.stage", b"decode")])])
    assert v.lost == ["a"]
    assert v.invalid


def test_a_stall_is_the_longest_a_partition_with_pending_work_answered_nothing() -> None:
    requests = [req("p0a", 0, 0, 900), req("p0b", 0, 1, 1500), req("p0c", 0, 2, 1550),
                req("p1a", 1, 0, 950), req("p1b", 1, 1, 1200),
                req("p2a", 2, 0, 100)]
    results = [res("p0a", 1100), res("p0b", 1600), res("p0c", 1700),
               res("p1a", 3500), res("p1b", 3600),   # p1 answered nothing from 1000 to 3500
               res("p2a", 200)]
    v = check(requests, results, [])
    assert v.stall_ms(1000) == 2500.0
    assert v.stall_ms(1000, until_ms=3000) == 100.0, "p0c waited 100 ms after p0b's answer"
    assert v.stall_ms(5000) == 0.0
    assert v.stall_ms(0) == 2550.0
    assert v.max_latency_by_partition() == {0: 200.0, 1: 2550.0, 2: 100.0}


def test_a_stall_is_infinite_when_a_request_is_never_answered() -> None:
    v = check([req("a", 0, 0, 10), req("b", 1, 0, 10)], [res("b", 20)], [])
    assert v.stall_ms(15) == math.inf
    assert v.stall_ms(0, until_ms=5) == 0.0, "a was written after the window"


def test_percentiles_can_be_limited_to_a_window() -> None:
    requests = [req(f"r{i}", 0, i, 1000 + i * 10) for i in range(100)]
    results = [res(f"r{i}", 1000 + i * 10 + (500 if 40 <= i < 50 else 5), i)
               for i in range(100)]
    v = check(requests, results, [])
    assert v.percentile(99) == 500.0
    assert v.percentile(99, since_ms=1500) == 5.0
    assert v.percentile(50, since_ms=1400, until_ms=1490) == 500.0
    assert math.isnan(v.percentile(50, since_ms=10_000))


@pytest.mark.parametrize("acked", [None, set()])
def test_nothing_accepted_is_nothing_lost(acked: set[str] | None) -> None:
    v = check([], [], [], acked=acked)
    assert (v.accepted, v.lost, v.duplicate_ratio) == (0, [], 0.0)
