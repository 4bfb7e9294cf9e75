"""Micro-batching and commit ordering, with a hand-driven clock."""

from __future__ import annotations

from dataclasses import dataclass

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from consumer.batching import Batcher, CommitLog, next_offsets
from tests.clock import Clock


@dataclass(frozen=True)
class Rec:
    """A record's position, all batching looks at."""

    topic: str
    partition: int
    offset: int


def recs(partition: int, *offsets: int, topic: str = "t") -> list[Rec]:
    """Records of one partition."""
    return [Rec(topic, partition, o) for o in offsets]


def test_a_batch_is_due_when_max_size_records_wait() -> None:
    clock = Clock()
    batcher: Batcher[Rec] = Batcher(max_size=3, max_delay=0.005, clock=clock)
    assert batcher.time_left() is None and not batcher.due()
    batcher.add(recs(0, 0, 1))
    assert not batcher.due() and batcher.time_left() == pytest.approx(0.005)
    batcher.add(recs(0, 2))
    assert batcher.due() and batcher.time_left() == 0.0
    assert batcher.take() == recs(0, 0, 1, 2)
    assert len(batcher) == 0 and batcher.time_left() is None


def test_a_batch_is_due_max_delay_after_its_first_record() -> None:
    clock = Clock()
    batcher: Batcher[Rec] = Batcher(max_size=100, max_delay=0.005, clock=clock)
    batcher.add(recs(0, 0))
    clock.now += 0.003
    batcher.add(recs(0, 1))  # a later record does not restart the delay
    assert batcher.time_left() == pytest.approx(0.002)
    assert not batcher.due()
    clock.now += 0.002
    assert batcher.due() and batcher.time_left() == 0.0
    clock.now += 1.0
    assert batcher.time_left() == 0.0  # never negative


def test_adding_nothing_starts_no_delay() -> None:
    clock = Clock()
    batcher: Batcher[Rec] = Batcher(max_size=2, max_delay=0.005, clock=clock)
    batcher.add([])
    clock.now += 1.0
    batcher.add(recs(0, 0))
    assert batcher.time_left() == pytest.approx(0.005)


def test_take_leaves_the_remainder_as_a_new_batch() -> None:
    clock = Clock()
    batcher: Batcher[Rec] = Batcher(max_size=3, max_delay=0.005, clock=clock)
    batcher.add(recs(0, 0, 1, 2, 3, 4) + recs(1, 0, 1))
    clock.now += 0.004
    assert batcher.take() == recs(0, 0, 1, 2)
    assert len(batcher) == 4
    assert batcher.due()  # still max_size waiting
    assert batcher.take() == recs(0, 3, 4) + recs(1, 0)
    assert len(batcher) == 1
    assert batcher.time_left() == pytest.approx(0.005)  # the rest started over when taken
    assert batcher.take() == recs(1, 1)
    assert batcher.take() == [] and batcher.time_left() is None


def test_drop_forgets_revoked_partitions_only() -> None:
    clock = Clock()
    batcher: Batcher[Rec] = Batcher(max_size=100, max_delay=0.005, clock=clock)
    batcher.add([Rec("t", 0, 0), Rec("t", 1, 0), Rec("u", 0, 0), Rec("t", 0, 1), Rec("t", 1, 1)])
    assert batcher.drop([("t", 0), ("x", 9)]) == 2
    assert batcher.take() == [Rec("t", 1, 0), Rec("u", 0, 0), Rec("t", 1, 1)]
    batcher.add(recs(2, 5))
    assert batcher.drop([("t", 2)]) == 1
    assert len(batcher) == 0 and batcher.time_left() is None
    assert batcher.drop([("t", 2)]) == 0


@settings(max_examples=50, deadline=None)
@given(max_size=st.integers(1, 8), steps=st.lists(
    st.one_of(st.integers(0, 10), st.just("take")), max_size=30))
def test_batches_keep_arrival_order_and_lose_nothing(max_size: int, steps: list[int | str]) -> None:
    batcher: Batcher[Rec] = Batcher(max_size=max_size, max_delay=1.0, clock=Clock())
    added: list[Rec] = []
    taken: list[Rec] = []
    for step in steps:
        if step == "take":
            batch = batcher.take()
            assert len(batch) <= max_size
            taken += batch
        else:
            new = recs(0, *range(len(added), len(added) + int(step)))
            batcher.add(new)
            added += new
        assert batcher.due() == (len(batcher) >= max_size)
    while len(batcher):
        taken += batcher.take()
    assert taken == added


def test_next_offsets_is_one_past_the_highest_offset_per_partition() -> None:
    records = [Rec("t", 0, 5), Rec("t", 1, 2), Rec("t", 0, 3), Rec("u", 0, 9), Rec("t", 0, 7)]
    assert next_offsets(records) == {("t", 0): 8, ("t", 1): 3, ("u", 0): 10}
    assert next_offsets([]) == {}
    assert next_offsets([Rec("t", 0, 0)]) == {("t", 0): 1}


def test_commit_log_commits_only_the_finished_prefix() -> None:
    log = CommitLog()
    first = log.open(recs(0, 0, 1) + recs(1, 0))
    second = log.open(recs(0, 2, 3))
    third = log.open(recs(1, 1) + recs(2, 0))
    assert len(log) == 3 and log.committable() == {}

    log.finish(second)
    assert log.committable() == {}  # the first batch may still be publishing
    log.finish(first)
    assert log.committable() == {("t", 0): 4, ("t", 1): 1}  # merged: the later offset wins
    assert len(log) == 1
    assert log.committable() == {}  # nothing is handed out twice

    log.finish(third)
    assert log.committable() == {("t", 1): 2, ("t", 2): 1}
    assert len(log) == 0


def test_commit_log_takes_empty_batches_in_its_stride() -> None:
    log = CommitLog()
    empty = log.open([])
    full = log.open(recs(0, 4))
    log.finish(full)
    assert log.committable() == {}
    log.finish(empty)
    assert log.committable() == {("t", 0): 5}


@settings(max_examples=50, deadline=None)
@given(sizes=st.lists(st.integers(0, 5), min_size=1, max_size=12), data=st.data())
def test_commits_never_pass_an_unfinished_batch(sizes: list[int], data: st.DataObject) -> None:
    log = CommitLog()
    batches: list[list[Rec]] = []
    offset = 0
    for size in sizes:  # one partition, fetched in order, cut into batches
        batches.append(recs(0, *range(offset, offset + size)))
        offset += size
    tokens = [log.open(b) for b in batches]
    finished: set[int] = set()
    committed = 0
    for i in data.draw(st.permutations(range(len(batches)))):
        log.finish(tokens[i])
        finished.add(i)
        commit = log.committable().get(("t", 0))
        if commit is not None:
            assert commit > committed
            committed = commit
        prefix = 0
        while prefix in finished:
            prefix += 1
        assert committed == sum(sizes[:prefix])  # exactly the records of the finished prefix
    assert len(log) == 0 and committed == sum(sizes)
