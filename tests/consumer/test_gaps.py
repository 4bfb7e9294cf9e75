"""The offset-gap guard on its own: what it hands over, where it seeks, when it gives up."""

from __future__ import annotations

from typing import NamedTuple

from aiokafka import TopicPartition

from consumer.gaps import GapGuard
from tests.clock import Clock

TP = TopicPartition("calc.requests", 0)
OTHER = TopicPartition("calc.requests", 1)


class Rec(NamedTuple):
    offset: int


def recs(*offsets: int) -> list[Rec]:
    return [Rec(o) for o in offsets]


def guard(patience: float = 0.5) -> tuple[GapGuard, Clock, list[tuple[TopicPartition, int]]]:
    clock = Clock()
    return GapGuard(patience, clock), clock, []


def test_consecutive_offsets_pass_untouched() -> None:
    g, _, seeks = guard()
    g.expect(TP, 0)
    assert g.check({TP: recs(0, 1, 2), OTHER: recs(7, 8)}, lambda *a: seeks.append(a)) == {
        TP: recs(0, 1, 2), OTHER: recs(7, 8)}
    assert g.check({TP: recs(3)}, lambda *a: seeks.append(a)) == {TP: recs(3)}
    assert seeks == [] and g.reread == 0


def test_a_skip_holds_back_what_follows_and_reads_the_gap_again() -> None:
    g, clock, seeks = guard()
    g.expect(TP, 90)
    # The later batch (95-96) was readable a moment before the earlier one (92-94).
    assert g.check({TP: recs(90, 91, 95, 96)}, lambda *a: seeks.append(a)) == {TP: recs(90, 91)}
    assert seeks == [(TP, 92)] and g.reread == 1
    clock.now += 0.01
    assert g.check({TP: recs(92, 93, 94, 95, 96)}, lambda *a: seeks.append(a)) == {
        TP: recs(92, 93, 94, 95, 96)}
    assert seeks == [(TP, 92)] and g.accepted == 0


def test_a_gap_that_stays_is_taken_as_real_after_the_patience() -> None:
    g, clock, seeks = guard(patience=0.5)
    g.expect(TP, 0)
    assert g.check({TP: recs(0, 1, 5)}, lambda *a: seeks.append(a)) == {TP: recs(0, 1)}
    for _ in range(2):
        clock.now += 0.2
        assert g.check({TP: recs(5, 6)}, lambda *a: seeks.append(a)) == {TP: []}
    clock.now += 0.2
    # 0.6 s after it was first seen (a transaction marker at 2-4, say): move on.
    assert g.check({TP: recs(5, 6)}, lambda *a: seeks.append(a)) == {TP: recs(5, 6)}
    assert seeks == [(TP, 2)] * 3 and (g.reread, g.accepted) == (1, 1)
    assert g.check({TP: recs(7)}, lambda *a: seeks.append(a)) == {TP: recs(7)}


def test_a_gap_at_the_start_is_seen_once_the_position_is_known() -> None:
    g, _, seeks = guard()
    g.expect(TP, 237)
    assert g.check({TP: recs(239, 240)}, lambda *a: seeks.append(a)) == {TP: []}
    assert seeks == [(TP, 237)]
    g.expect(OTHER, None)  # position unknown: the first record sets it
    assert g.check({OTHER: recs(50, 51)}, lambda *a: seeks.append(a)) == {OTHER: recs(50, 51)}
    assert g.check({OTHER: recs(53)}, lambda *a: seeks.append(a)) == {OTHER: []}
    assert seeks[-1] == (OTHER, 52)


def test_forgotten_and_rewound_partitions_start_over() -> None:
    g, _, seeks = guard()
    g.expect(TP, 10)
    g.forget([TP])
    assert not g.expecting(TP)
    assert g.check({TP: recs(500)}, lambda *a: seeks.append(a)) == {TP: recs(500)}
    # Read again from an earlier offset (a seek elsewhere): not a gap.
    assert g.check({TP: recs(3, 4)}, lambda *a: seeks.append(a)) == {TP: recs(3, 4)}
    assert seeks == []


def test_no_patience_means_no_rereading() -> None:
    g, _, seeks = guard(patience=0.0)
    g.expect(TP, 0)
    assert g.check({TP: recs(0, 3)}, lambda *a: seeks.append(a)) == {TP: recs(0, 3)}
    assert seeks == [] and g.accepted == 1
