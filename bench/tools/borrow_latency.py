"""``python -m bench.tools.borrow_latency``: what a wait for a result on a borrowed partition
costs when the replica already borrows another one.

Two result readers (`producer_api.reader.ResultReader`, as two API replicas run them) share a
reply topic of 4 partitions on an embedded broker. Reader A waits for ``--trials`` results,
one at a time, each on one of B's partitions: it notes where that partition ends
(``ResultReader.expect``, what a ``?wait=`` of a client id there does before publishing), then
the result is written and A reads it; then a ``GET``'s read of that partition from the window
(``ResultReader.complete``, a partition with 5 results). First with nothing else borrowed, then
while A also borrows another of B's partitions (a ``GET`` of an id there), where nothing new
arrives: its fetch then waits at the broker, up to ``fetch_max_wait_ms``, on A's connection.
Prints, per case, the end-offset lookup, the time until the result is read, and the ``GET``'s
read.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import orjson
from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from core.kafka import EmbeddedKafka
from core.net import free_port
from producer_api.reader import ResultReader
from producer_api.settings import ApiSettings
from producer_api.store import ResultStore, scoped

PARTITIONS = 4


def _result(request_id: str) -> bytes:
    return orjson.dumps({"id": request_id, "op": "sum", "status": "ok", "result": 1.0,
                         "error": None})


async def _readers(bootstrap: str) -> tuple[ResultReader, ResultReader, ApiSettings]:
    suffix = f"{time.time_ns():x}"
    settings = ApiSettings(bootstrap_servers=bootstrap, requests_topic=f"rq-{suffix}",
                           results_topic=f"rs-{suffix}", dlq_topic=f"dl-{suffix}",
                           publish_timeout_s=1.0, reply_borrow_s=0.3)
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(settings.results_topic, PARTITIONS, 1)])
    finally:
        await admin.close()
    a, b = (ResultReader(settings, ResultStore(10_000, 1 << 24, settings.result_ttl_s))
            for _ in range(2))
    for reader in (a, b):
        reader.demands.append(reader.store.waited_keys)
        await reader.start(set(range(PARTITIONS)))
    deadline = time.monotonic() + 60
    while not (a.caught_up.is_set() and b.caught_up.is_set() and len(b.owned) >= 2
               and a.owned and not a.owned & b.owned):
        if time.monotonic() > deadline:
            raise TimeoutError("the readers did not share the reply topic in 60 s")
        await asyncio.sleep(0.1)
    return a, b, settings


async def run(bootstrap: str, trials: int,
              ) -> dict[str, tuple[list[float], list[float], list[float]]]:
    """Per case: the lookups', the results' and the GETs' reads' times, ms."""
    a, b, settings = await _readers(bootstrap)
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all")
    await producer.start()
    polled, waited = sorted(b.owned)[:2]
    ids: Iterator[str] = (i for i in (f"w-{n}" for n in range(1_000_000))
                          if a.routes.partition_of(i) == waited)
    rows: dict[str, tuple[list[float], list[float], list[float]]] = {}
    try:
        for case in ("nothing else borrowed", "another partition borrowed"):
            lookups: list[float] = []
            results: list[float] = []
            reads: list[float] = []
            for _ in range(trials):
                if case != "nothing else borrowed":
                    assert await a.complete(polled)  # borrowed (again, its lease is short)
                # The last wait's borrow is over (no event says so; the note behind it lasts
                # publish_timeout_s).
                while a.borrowed - {polled}:  # noqa: ASYNC110
                    await asyncio.sleep(0.05)
                await asyncio.sleep(0.137)  # off any beat of the fetches' waits
                key = scoped("", next(ids))
                t0 = time.perf_counter()
                await a.expect(key)
                lookups.append((time.perf_counter() - t0) * 1000)
                waiter = a.store.waiter(key)
                await producer.send_and_wait(settings.results_topic,
                                             _result(key), partition=waited)
                await asyncio.wait_for(waiter, 30)
                results.append((time.perf_counter() - t0) * 1000)
                a.store.drop_waiter(key, waiter)
                while waited in a.borrowed:  # noqa: ASYNC110 - as above
                    await asyncio.sleep(0.05)
                if case != "nothing else borrowed":
                    assert await a.complete(polled)
                t0 = time.perf_counter()
                assert await a.complete(waited)
                reads.append((time.perf_counter() - t0) * 1000)
            rows[case] = (lookups, results, reads)
    finally:
        await producer.stop()
        await asyncio.gather(a.stop(), b.stop())
    return rows


def _summary(values: list[float]) -> str:
    return f"{statistics.median(values):.1f} ({min(values):.1f}-{max(values):.1f})"


def main() -> None:
    """Start a broker, run both cases, print them side by side."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=20, help="waits per case")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-borrow-") as tmp, \
            EmbeddedKafka(free_port(), data_dir=Path(tmp)) as kafka:
        rows = asyncio.run(run(kafka.bootstrap_servers, args.trials))
    print(f"\n{args.trials} waits per case, one at a time, for a result on a borrowed "
          "partition:\n")
    print("| case | end-offset lookup ms, median (min-max) | until the result is read ms "
          "| a GET's read of the partition ms |")
    print("|---|---|---|---|")
    for case, (lookups, results, reads) in rows.items():
        print(f"| {case} | {_summary(lookups)} | {_summary(results)} | {_summary(reads)} |")


if __name__ == "__main__":
    main()
