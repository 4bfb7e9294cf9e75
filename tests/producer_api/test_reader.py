"""The reply-topic reader on a real broker: caught up means everything already written, a
broker killed and restarted on its data costs the reader nothing, and replicas joining the reply
group together, or beside a replica of an older version, share it at once."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from core.admin import wait_for_broker
from core.kafka import EmbeddedKafka
from core.net import free_port
from producer_api.reader import ResultReader, share_consumer
from producer_api.store import ResultStore, scoped
from schemas.topics import Topics
from tests.kafka import Deployment, create_topics, unique
from tests.producer_api.conftest import api_settings
from tests.waiting import until

PARTITIONS = 4


def result(request_id: str) -> bytes:
    """A result document as the worker writes it."""
    return orjson.dumps({"id": request_id, "op": "sum", "status": "ok", "result": 1.0,
                         "error": None})


async def write_results(bootstrap: str, topic: str, prefix: str, per_partition: int) -> set[str]:
    """``per_partition`` results on every partition; their ids."""
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", enable_idempotence=True)
    await producer.start()
    try:
        acks, ids = [], set()
        for p in range(PARTITIONS):
            for i in range(per_partition):
                ids.add(request_id := f"{prefix}-{p}-{i}")
                acks.append(await producer.send(topic, result(request_id), partition=p))
        await asyncio.gather(*acks)
        return ids
    finally:
        await producer.stop()


async def write_one(dep: Deployment, request_id: str, partition: int) -> None:
    """The result of ``request_id`` on ``partition`` of the deployment's reply topic."""
    producer = AIOKafkaProducer(bootstrap_servers=dep.bootstrap, acks="all")
    await producer.start()
    try:
        await producer.send_and_wait(dep.topics.results, result(request_id), partition=partition)
    finally:
        await producer.stop()


def relay_watcher(reader: ResultReader) -> Callable[[set[str]], asyncio.Future[None]]:
    """``wait_for(ids)``: a future done once the reader has relayed every id."""
    seen: set[str] = set()
    arrived = asyncio.Event()

    def note(request_id: str, value: bytes) -> None:
        seen.add(request_id)
        arrived.set()

    async def wait_for(ids: set[str]) -> None:
        try:
            async with asyncio.timeout(20):
                while not ids <= seen:
                    arrived.clear()
                    await arrived.wait()
        except TimeoutError:
            raise AssertionError(f"never relayed: {sorted(ids - seen)}") from None

    reader.listeners.append(note)
    return lambda ids: asyncio.ensure_future(wait_for(ids))


async def test_caught_up_means_every_result_written_before_start_is_remembered(
        kafka_bootstrap: str) -> None:
    suffix = unique("caught")
    dep = Deployment(kafka_bootstrap, Topics(f"rq-{suffix}", f"rs-{suffix}", f"dl-{suffix}"),
                     f"g-{suffix}", PARTITIONS)
    await create_topics(dep.bootstrap, dep.topics.all(), PARTITIONS)
    written = await write_results(dep.bootstrap, dep.topics.results, "old", 50)
    reader = ResultReader(api_settings(dep), ResultStore(10_000, 1 << 24, 600.0))
    try:
        await reader.start(set(range(PARTITIONS)))
        await asyncio.wait_for(reader.caught_up.wait(), 15)
        missing = {i for i in written if reader.store.get(i) is None}
        assert not missing, sorted(missing)[:5]
    finally:
        await reader.stop()


async def test_the_reader_resumes_after_the_broker_is_killed_and_restarted() -> None:
    broker = EmbeddedKafka(free_port())
    await asyncio.to_thread(broker.start)
    suffix = unique("bounce")
    dep = Deployment(broker.bootstrap_servers,
                     Topics(f"rq-{suffix}", f"rs-{suffix}", f"dl-{suffix}"), f"g-{suffix}",
                     PARTITIONS)
    reader = None
    try:
        await create_topics(dep.bootstrap, dep.topics.all(), PARTITIONS)
        settings = api_settings(dep)
        reader = ResultReader(settings, ResultStore(10_000, 1 << 24, 600.0))
        wait_for = relay_watcher(reader)
        await reader.start(set(range(PARTITIONS)))
        await asyncio.wait_for(reader.caught_up.wait(), 15)
        before = await write_results(dep.bootstrap, settings.results_topic, "before", 5)
        await wait_for(before)

        await asyncio.to_thread(broker.kill)
        await asyncio.to_thread(broker.start)
        await wait_for_broker(dep.bootstrap)
        after = await write_results(dep.bootstrap, settings.results_topic, "after", 3)
        await wait_for(after)

        assert reader.running
        store = reader.store
        for request_id in before | after:
            entry = store.get(request_id)
            assert entry is not None and entry.result == result(request_id)
        assert store.duplicates == 0
    finally:
        if reader is not None:
            await reader.stop()
        await asyncio.to_thread(broker.close)


async def test_a_reader_that_lets_the_broker_gather_results_still_relays_a_lone_one(
        kafka_bootstrap: str) -> None:
    # The broker holds each fetch until a megabyte of results is there or fetch_max_wait_ms
    # passes; a single small result must come out of the second bound, not wait for the first.
    suffix = unique("gather")
    dep = Deployment(kafka_bootstrap, Topics(f"rq-{suffix}", f"rs-{suffix}", f"dl-{suffix}"),
                     f"g-{suffix}", PARTITIONS)
    await create_topics(dep.bootstrap, dep.topics.all(), PARTITIONS)
    settings = api_settings(dep, fetch_min_bytes=1 << 20, fetch_max_wait_ms=50)
    assert settings.reader_options(group=True)["fetch_min_bytes"] == 1 << 20
    reader = ResultReader(settings, ResultStore(10_000, 1 << 24, 600.0))
    try:
        wait_for = relay_watcher(reader)
        await reader.start(set(range(PARTITIONS)))
        await asyncio.wait_for(reader.caught_up.wait(), 15)
        for round_ in range(3):
            await wait_for(await write_results(dep.bootstrap, dep.topics.results,
                                               f"lone-{round_}", 1))
    finally:
        await reader.stop()


def routed_deployment(bootstrap: str, prefix: str) -> Deployment:
    suffix = unique(prefix)
    return Deployment(bootstrap, Topics(f"rq-{suffix}", f"rs-{suffix}", f"dl-{suffix}"),
                      f"g-{suffix}", PARTITIONS)


async def test_replicas_that_join_the_reply_group_together_share_it_at_once(
        kafka_bootstrap: str) -> None:
    # Two replicas' share consumers in one process, subscribing at the same instant so that
    # their joins overlap; heartbeats as the replicas' in tests/producer_api/test_replicas.py.
    # Eight groups in a row: with a second protocol listed (aiokafka#1168), 3 runs in 4 of five
    # groups each had a pair that never settled.
    dep = routed_deployment(kafka_bootstrap, "together")
    await create_topics(dep.bootstrap, dep.topics.all(), PARTITIONS)
    for round_ in range(8):
        await join_together(dep, unique("replies"), round_)


async def join_together(dep: Deployment, group: str, round_: int) -> None:
    """Two share consumers subscribe to ``group`` at once; both must own a share, together
    cover the topic, and each learn who owns what."""
    urls = ["http://10.0.0.1:8000", "http://10.0.0.2:8000"]
    learned: list[dict[int, str]] = [{}, {}]
    consumers = [share_consumer(api_settings(dep, advertised_url=url, reply_group=group,
                                             session_timeout_ms=2000, heartbeat_interval_ms=500),
                                functools.partial(learned.__setitem__, i))
                 for i, url in enumerate(urls)]
    await asyncio.gather(*(consumer.start() for consumer in consumers))
    for consumer in consumers:
        consumer.subscribe([dep.topics.results])
    fetching = [asyncio.create_task(fetch_forever(consumer)) for consumer in consumers]

    def shared() -> bool:
        owned = [{tp.partition for tp in consumer.assignment()} for consumer in consumers]
        owners = {p: url for url, share in zip(urls, owned, strict=True) for p in share}
        return (all(owned) and sum(map(len, owned)) == PARTITIONS
                and set(owners) == set(range(PARTITIONS)) and learned == [owners, owners])

    try:
        await until(shared, 20, f"both replicas to own a share and know who owns the rest "
                                f"(group {round_ + 1} of 8)")
    finally:
        for task in fetching:
            task.cancel()
        await asyncio.gather(*fetching, return_exceptions=True)
        await asyncio.gather(*(consumer.stop() for consumer in consumers))


async def test_a_replica_of_an_older_version_shares_the_reply_group(kafka_bootstrap: str) -> None:
    # Older replicas joined with aiokafka's default protocol, roundrobin, and no advertised URL.
    dep = routed_deployment(kafka_bootstrap, "older")
    await create_topics(dep.bootstrap, dep.topics.all(), PARTITIONS)
    url = "http://10.0.0.1:8000"
    settings = api_settings(dep, advertised_url=url)
    older = AIOKafkaConsumer(bootstrap_servers=dep.bootstrap, group_id=settings.reply_group_id,
                             enable_auto_commit=False)
    reader = ResultReader(settings, ResultStore(10_000, 1 << 24, 600.0))
    await older.start()
    older.subscribe([dep.topics.results])
    fetching = asyncio.create_task(fetch_forever(older))

    def shared() -> bool:
        theirs = {tp.partition for tp in older.assignment()}
        return (bool(theirs) and bool(reader.owned) and not theirs & reader.owned
                and theirs | reader.owned == set(range(PARTITIONS)))

    try:
        await reader.start(set(range(PARTITIONS)))
        await until(shared, 20, "the older and the newer replica to split the partitions")
        # Whoever led, the map names no partition of the older replica's: those are borrowed.
        assert set(reader.routes.owners) <= reader.owned
        assert set(reader.routes.owners.values()) <= {url}
    finally:
        fetching.cancel()
        await asyncio.gather(fetching, return_exceptions=True)
        await asyncio.gather(reader.stop(), older.stop())


async def fetch_forever(consumer: AIOKafkaConsumer) -> None:
    """Poll as a replica's read loop does (a member that never polls is not in the group)."""
    while True:
        await consumer.getmany(timeout_ms=100)


@contextlib.asynccontextmanager
async def sharing(bootstrap: str, prefix: str, per_partition: int, **overrides: Any,
                  ) -> AsyncIterator[tuple[ResultReader, ResultReader, Deployment, set[str]]]:
    """Two readers (two replicas' halves) on a fresh reply topic holding ``per_partition``
    results on each partition (their ids the last item), both caught up on a share of their
    own, each borrowing for its store's waiters; stopped when the block ends."""
    dep = routed_deployment(bootstrap, prefix)
    await create_topics(dep.bootstrap, dep.topics.all(), PARTITIONS)
    past = await write_results(dep.bootstrap, dep.topics.results, "past", per_partition)
    settings = api_settings(dep, **overrides)
    a, b = (ResultReader(settings, ResultStore(10_000, 1 << 24, settings.result_ttl_s))
            for _ in range(2))
    try:
        for reader in (a, b):
            reader.demands.append(reader.store.waited_keys)
            await reader.start(set(range(PARTITIONS)))
        await until(lambda: (a.caught_up.is_set() and b.caught_up.is_set() and bool(a.owned)
                             and bool(b.owned) and not a.owned & b.owned
                             and len(a.owned | b.owned) == PARTITIONS), 20,
                    "both readers to own a share and catch up")
        yield a, b, dep, past
    finally:
        await asyncio.gather(a.stop(), b.stop())


async def test_a_wait_for_a_request_published_here_reads_its_borrowed_partition_from_the_end(
        kafka_bootstrap: str) -> None:
    # Two replicas, a window of results on every partition. A waits for a client id on B's
    # share: it borrows that partition from where it ended when the request was about to be
    # published, not from the window; asked about an id of the past there, it reads the window.
    async with sharing(kafka_bootstrap, "expect", 20) as (a, b, dep, past):
        partition = min(b.owned)
        request_id = next(i for i in (f"waited-{n}" for n in range(1000))
                          if a.routes.partition_of(i) == partition)
        owned_id = next(i for i in (f"here-{n}" for n in range(1000))
                        if a.routes.partition_of(i) in a.owned)
        await a.expect(scoped("", owned_id))
        assert not a.borrowed, "a partition of its own share is never borrowed"

        read_before = a.records
        await a.expect(scoped("", request_id))
        waiter = a.store.waiter(scoped("", request_id))
        await write_one(dep, request_id, partition)
        assert orjson.loads(await asyncio.wait_for(waiter, 20))["id"] == request_id
        assert a.borrowed == {partition}
        assert a.records - read_before == 1, "read the one result, not the window's 20 too"

        # GET of an id of the past on that partition: read again, from the window.
        assert await a.complete(partition)
        earlier = {i for i in past if i.startswith(f"past-{partition}-")}
        assert all(a.store.get(scoped("", i)) is not None for i in earlier)
        a.store.drop_waiter(scoped("", request_id), waiter)


async def test_a_wait_for_an_earlier_request_borrows_from_where_its_owner_has_read(
        kafka_bootstrap: str) -> None:
    # B owns a partition with 20 results and says up to where it has read it. A, waiting for
    # an id there, borrows it from that offset (the result is not before it), not from the
    # window; a wait noted before the offset A already reads from makes A read again from there.
    producer = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap, acks="all")
    await producer.start()
    try:
        async with sharing(kafka_bootstrap, "readto", 20) as (a, b, dep, _):
            partition = min(b.owned)
            ids = (i for i in (f"later-{n}" for n in range(1000))
                   if a.routes.partition_of(i) == partition)
            first, second, third = next(ids), next(ids), next(ids)
            assert await b.read_to(partition) == 20
            assert await a.read_to(partition) is None, "not read here"

            # The first result is written; B has read it when A asks.
            await producer.send_and_wait(dep.topics.results, result(first), partition=partition)
            await until(lambda: b.store.get(scoped("", first)) is not None, 20, "B to read it")
            assert await b.read_to(partition) == 21
            # A waits for the second from B's offset: only that result is read.
            read_before = a.records
            a.note(scoped("", second), 21)
            waiter = a.store.waiter(scoped("", second))
            await producer.send_and_wait(dep.topics.results, result(second), partition=partition)
            assert orjson.loads(await asyncio.wait_for(waiter, 20))["id"] == second
            assert a.borrowed == {partition}
            assert a.records - read_before == 1, "read the one result, not the window's 21 too"
            assert a.store.get(scoped("", first)) is None

            # A wait for the first, noted at 20 (before where A reads from): read again from 20.
            a.note(scoped("", first), 20)
            waiter = a.store.waiter(scoped("", first))
            assert orjson.loads(await asyncio.wait_for(waiter, 20))["id"] == first
            assert a.records - read_before == 3, "20 and 21 again, nothing before them"
            a.note(scoped("", third), 22)
            third_waiter = a.store.waiter(scoped("", third))
            await producer.send_and_wait(dep.topics.results, result(third), partition=partition)
            assert orjson.loads(await asyncio.wait_for(third_waiter, 20))["id"] == third
    finally:
        await producer.stop()


async def test_a_wait_elsewhere_never_waits_behind_a_borrowed_partitions_fetch(
        kafka_bootstrap: str) -> None:
    # A broker answers one request of a connection at a time, and a fetch of partitions with
    # nothing new waits there up to fetch_max_wait_ms (20 s here). A borrows one of B's
    # partitions, whose next fetch then waits. A wait on another of B's partitions must queue
    # behind it neither with its end-offset lookup (past publish_timeout_s, 1 s, it gives up and
    # the wait reads the window: 6 records instead of 1) nor with the fetch that reads its
    # result (it came only when the other fetch ended, 20 s later).
    async with sharing(kafka_bootstrap, "lookups", 5, fetch_max_wait_ms=20_000) as (
            a, b, dep, _):
        polled, waited = sorted(b.owned)[:2]  # round robin: two partitions each
        assert await a.complete(polled)  # borrowed
        fetcher = a._borrower.consumer._fetcher  # type: ignore[union-attr]  # noqa: SLF001
        await until(lambda: bool(fetcher._in_flight), 20,  # noqa: SLF001 - no public view
                    "the borrower's next fetch to wait at the broker")
        request_id = next(i for i in (f"waited-{n}" for n in range(1000))
                          if a.routes.partition_of(i) == waited)
        read_before = a.records
        await a.expect(scoped("", request_id))
        waiter = a.store.waiter(scoped("", request_id))
        await write_one(dep, request_id, waited)
        # Half the other fetch's wait: without the fixes it never comes sooner.
        assert orjson.loads(await asyncio.wait_for(waiter, 10))["id"] == request_id
        assert a.records - read_before == 1, "read from the end noted, not the window"


async def test_a_partition_owned_before_the_last_rebalance_is_borrowed_from_the_window(
        kafka_bootstrap: str) -> None:
    # A owned every partition until B joined, and kept where it left each. Results written
    # since to one of B's partitions are older than the recovery window but one: borrowed for
    # a GET, the partition is read from the window, not from where A left it.
    dep = routed_deployment(kafka_bootstrap, "handoff")
    await create_topics(dep.bootstrap, dep.topics.all(), PARTITIONS)
    settings = api_settings(dep)
    a, b = (ResultReader(settings, ResultStore(10_000, 1 << 24, 600.0)) for _ in range(2))
    try:
        await a.start(set(range(PARTITIONS)))
        await until(lambda: a.caught_up.is_set() and len(a.owned) == PARTITIONS, 20,
                    "A to own every partition")
        await b.start(set(range(PARTITIONS)))
        await until(lambda: bool(a.owned) and bool(b.owned) and not a.owned & b.owned
                    and len(a.owned | b.owned) == PARTITIONS, 20, "A and B to share")
        partition = min(b.owned)
        old_ms = int((time.time() - 2 * settings.recover_s) * 1000)
        producer = AIOKafkaProducer(bootstrap_servers=dep.bootstrap, acks="all")
        await producer.start()
        try:
            for i in range(40):
                await producer.send_and_wait(dep.topics.results, result(f"old-{i}"),
                                             partition=partition, timestamp_ms=old_ms)
            await producer.send_and_wait(dep.topics.results, result("recent"),
                                         partition=partition)
        finally:
            await producer.stop()

        read_before = a.records
        assert await a.complete(partition)
        assert a.store.get(scoped("", "recent")) is not None
        assert a.store.get(scoped("", "old-0")) is None
        assert a.records - read_before == 1, "read from the window, not the 40 records before it"
    finally:
        await asyncio.gather(a.stop(), b.stop())
