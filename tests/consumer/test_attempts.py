"""The attempts journal's bookkeeping, without a broker (the crash loop itself runs in
tests/faults/test_crash_loop.py with real processes)."""

from __future__ import annotations

from dataclasses import dataclass

import orjson

from consumer.attempts import AttemptJournal


@dataclass(frozen=True)
class Rec:
    topic: str
    partition: int
    offset: int


def recs(partition: int, offsets: range) -> list[Rec]:
    return [Rec("rq", partition, o) for o in offsets]


def test_each_start_is_one_more_attempt_for_the_records_it_covers() -> None:
    journal = AttemptJournal("rq.attempts", partitions=2, worker="w")
    assert not journal.suspects(recs(0, range(10)))
    (first,) = journal.start(recs(0, range(0, 10)))
    assert (first.topic, first.partition, first.key) == ("rq.attempts", 0, b"rq:0")
    assert orjson.loads(first.value) == {"topic": "rq", "partition": 0, "first": 0, "last": 9,
                                         "attempt": 1, "worker": "w"}
    assert journal.prior(Rec("rq", 0, 5)) == 1 and journal.prior(Rec("rq", 0, 10)) == 0
    journal.start(recs(0, range(5, 6)))
    assert journal.prior(Rec("rq", 0, 5)) == 2
    assert journal.prior(Rec("rq", 0, 4)) == 1


def test_a_batch_over_two_partitions_writes_one_entry_per_partition() -> None:
    journal = AttemptJournal("rq.attempts", partitions=2, worker="w")
    entries = journal.start([*recs(1, range(3)), *recs(3, range(7, 9))])
    assert sorted((e.partition, e.key) for e in entries) == [(1, b"rq:1"), (1, b"rq:3")]


def test_committed_and_revoked_attempts_are_forgotten() -> None:
    journal = AttemptJournal("rq.attempts", partitions=1, worker="w")
    journal.start(recs(0, range(0, 10)))
    journal.start(recs(0, range(10, 20)))
    journal.committed({("rq", 0): 10})
    assert journal.prior(Rec("rq", 0, 3)) == 0
    assert journal.prior(Rec("rq", 0, 15)) == 1
    journal.revoked([("rq", 0)])
    assert journal.prior(Rec("rq", 0, 15)) == 0
    assert not journal.loaded(("rq", 0))
