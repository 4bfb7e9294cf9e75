"""``core.logs``: aiokafka's repeated retry errors are let through once per window, with a count
of those held back; every other logger's lines pass untouched."""

from __future__ import annotations

import logging

from core.logs import RepeatFilter


def record(name: str, msg: str, created: float, *args: object) -> logging.LogRecord:
    made = logging.LogRecord(name, logging.ERROR, __file__, 1, msg, args, None)
    made.created = created
    return made


def test_a_repeated_aiokafka_error_passes_once_per_window_with_the_count_held_back() -> None:
    repeats = RepeatFilter(window_s=10)
    refused = "Unable connect to node with id %s: [Errno 111] Connection refused"
    first = record("aiokafka", refused, 100.0, 1)
    assert repeats.filter(first)
    # A broker away: the same line every few milliseconds.
    held = [record("aiokafka", refused, 100.0 + i * 0.005, 1) for i in range(1, 1000)]
    assert not any(repeats.filter(r) for r in held)
    # Another message, or the same one about another node, is its own line.
    assert repeats.filter(record("aiokafka.consumer.fetcher", "Failed fetch messages", 101.0))
    assert repeats.filter(record("aiokafka", refused, 101.0, 2))
    later = record("aiokafka", refused, 110.0, 1)
    assert repeats.filter(later)
    assert later.getMessage() == ("Unable connect to node with id 1: [Errno 111] Connection "
                                  "refused (999 more like it held back in the last 10s)")
    assert not repeats.filter(record("aiokafka", refused, 110.5, 1))


def test_other_loggers_pass_untouched() -> None:
    repeats = RepeatFilter(window_s=10)
    lines = [record("consumer.worker", "publishing %d records failed", 100.0 + i, 3)
             for i in range(5)]
    assert all(repeats.filter(r) for r in lines)
    assert {r.getMessage() for r in lines} == {"publishing 3 records failed"}
