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


def test_nothing_is_journaled_on_a_partition_handed_over_cleanly() -> None:
    journal = AttemptJournal("rq.attempts", partitions=2, worker="w")
    assert journal.start(recs(0, range(10))) == []
    assert journal.prior(Rec("rq", 0, 3)) == 0


def test_on_a_watched_partition_each_start_is_one_more_attempt() -> None:
    journal = AttemptJournal("rq.attempts", partitions=2, worker="w")
    journal.watch(("rq", 0))
    (first,) = journal.start(recs(0, range(0, 10)))
    assert (first.topic, first.partition, first.key) == ("rq.attempts", 0, b"rq:0")
    assert orjson.loads(first.value) == {"kind": "attempt", "topic": "rq", "partition": 0,
                                         "first": 0, "last": 9, "attempt": 1, "worker": "w"}
    assert journal.prior(Rec("rq", 0, 5)) == 1 and journal.prior(Rec("rq", 0, 10)) == 0
    journal.start(recs(0, range(5, 6)))
    assert journal.prior(Rec("rq", 0, 5)) == 2
    assert journal.prior(Rec("rq", 0, 4)) == 1


def test_only_watched_partitions_of_a_batch_are_journaled() -> None:
    journal = AttemptJournal("rq.attempts", partitions=2, worker="w")
    journal.watch(("rq", 3))
    entries = journal.start([*recs(1, range(3)), *recs(3, range(7, 9))])
    assert [(e.partition, e.key) for e in entries] == [(1, b"rq:3")]


def test_committed_and_released_attempts_are_forgotten() -> None:
    journal = AttemptJournal("rq.attempts", partitions=1, worker="w")
    journal.watch(("rq", 0))
    journal.start(recs(0, range(0, 10)))
    journal.start(recs(0, range(10, 20)))
    journal.committed({("rq", 0): 10})
    assert journal.prior(Rec("rq", 0, 3)) == 0
    assert journal.prior(Rec("rq", 0, 15)) == 1
    (released,) = journal.released([("rq", 0)])
    assert orjson.loads(released.value)["kind"] == "released"
    assert journal.prior(Rec("rq", 0, 15)) == 0
    assert not journal.loaded(("rq", 0)) and not journal.watched(("rq", 0))


def test_an_attempt_whose_computation_returned_no_longer_counts() -> None:
    journal = AttemptJournal("rq.attempts", partitions=1, worker="w")
    journal.watch(("rq", 0))
    journal.start(recs(0, range(0, 10)))
    (mark,) = journal.computed(recs(0, range(0, 10)))
    assert orjson.loads(mark.value) == {"kind": "computed", "topic": "rq", "partition": 0,
                                        "first": 0, "last": 9, "worker": "w"}
    assert journal.prior(Rec("rq", 0, 4)) == 0, "died publishing or committing: not a suspect"
    assert journal.computed(recs(1, range(3))) == [], "unwatched partitions send nothing"
