"""The result store on its own: limits, TTL, waiters, duplicates (no broker)."""

from __future__ import annotations

import asyncio

import pytest

from producer_api.reader import ReaderStopped
from producer_api.store import DONE, PUBLISHING, QUEUED, ResultStore
from tests.clock import Clock


def store(**kw: float) -> tuple[ResultStore, Clock]:
    clock = Clock(1000.0)
    opts = {"max_entries": 100, "max_bytes": 1 << 20, "ttl": 60.0, **kw}
    return ResultStore(int(opts["max_entries"]), int(opts["max_bytes"]), opts["ttl"],
                       clock), clock


async def test_an_entry_goes_publishing_queued_done_and_wakes_its_waiter() -> None:
    s, _ = store()
    entry = s.reserve("a", "sum", b"f" * 16)
    assert s.get("a") is entry and entry.state == PUBLISHING
    waiter = s.waiter("a")
    s.acked(entry)
    assert entry.state == QUEUED
    assert s.put_result("a", "sum", b'{"id":"a"}')
    assert entry.state == DONE and await waiter == b'{"id":"a"}'
    assert entry.state_document() == b'{"id":"a"}'
    assert not s.put_result("a", "sum", b'{"id":"a","attempt":2}')
    assert s.duplicates == 1 and entry.result == b'{"id":"a"}'


async def test_a_result_may_overtake_the_ack() -> None:
    s, _ = store()
    entry = s.reserve("a", "sum", None)
    s.put_result("a", "sum", b"{}")
    s.acked(entry)
    assert entry.state == DONE


async def test_releasing_forgets_the_id_and_tells_concurrent_submits() -> None:
    s, _ = store()
    entry = s.reserve("a", "sum", None)
    pending = s.ack_waiter(entry)
    s.release(entry)
    assert s.get("a") is None and await pending is False


async def test_the_oldest_are_forgotten_first_by_count_bytes_and_age() -> None:
    s, clock = store(max_entries=3)
    for name in "abcd":
        s.reserve(name, "sum", None)
    assert [s.get(n) is not None for n in "abcd"] == [False, True, True, True]

    s, clock = store(max_bytes=1 << 20)
    s.max_bytes = 25
    for name in "abc":
        s.put_result(name, "sum", b"x" * 10)
    assert s.get("a") is None and s.get("c") is not None and s.result_bytes == 20

    s, clock = store(ttl=60)
    s.reserve("old", "sum", None)
    clock.now += 30
    s.reserve("young", "sum", None)
    clock.now += 31
    assert s.get("old") is None and s.get("young") is not None
    s.sweep()
    assert len(s) == 1


async def test_the_store_says_since_when_it_remembers_every_result() -> None:
    # What a replica vouches for when another asks up to where it has read a partition.
    s, clock = store(ttl=60)
    s.max_bytes = 25
    assert s.keeps_for(30) and s.keeps_for(60)
    assert not s.keeps_for(61), "results past the TTL are not answered"
    for name in "ab":
        s.put_result(name, "sum", b"x" * 10)
        clock.now += 1
    assert s.keeps_for(30)
    s.put_result("c", "sum", b"x" * 10)  # over the bytes: a, answered 2 s ago, goes
    assert s.get("a") is None
    assert not s.keeps_for(2) and not s.keeps_for(30)
    assert s.keeps_for(1.5)

    # Ids without a result forgotten for the count leave no result unremembered.
    s, clock = store(max_entries=3)
    for name in "abcd":
        s.reserve(name, "sum", None)
    assert s.get("a") is None and s.keeps_for(30)


async def test_a_result_refreshes_its_entry() -> None:
    s, clock = store(max_entries=2)
    s.reserve("a", "sum", None)
    s.reserve("b", "sum", None)
    clock.now += 1
    s.put_result("a", "sum", b"{}")  # a is now the youngest
    s.reserve("c", "sum", None)
    assert s.get("a") is not None and s.get("b") is None


async def test_dropping_a_waiter_and_failing_all_waiters() -> None:
    s, _ = store()
    first, second = s.waiter("a"), s.waiter("a")
    s.drop_waiter("a", first)
    s.fail_waiters(ReaderStopped("gone"))
    with pytest.raises(ReaderStopped):
        await second
    assert not first.done()
    first.cancel()
    await asyncio.sleep(0)
