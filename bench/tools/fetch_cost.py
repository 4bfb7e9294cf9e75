"""``python -m bench.tools.fetch_cost``: the CPU an aiokafka consumer spends per fetch round trip,
and per record it reads.

What an API replica spends per result falls more slowly than 1/N with N replicas (findings 14,
30, 36): its fetches do not fall with its share. This measures the client's side of a fetch
alone. A producer in another process writes a round of small records, one to each partition of
a ``--partitions`` topic, ``--rate`` rounds a second; a consumer in this process, assigned the
first ``share`` partitions, reads them: one fetch per round, ``share`` records in it. Its CPU
over ``--window`` s, divided by the FetchRequests it sent, for each share in
``--shares``: the slope between shares is the cost per record, what is left the cost per fetch.
The consumer is set as the API's reader is (``read_committed``, uvloop; ``--loop asyncio`` for
the default loop). ``--clients`` measures other consumers in the same run, each share in turn:
``librdkafka`` is confluent-kafka's consumer read by a thread that waits in librdkafka for the
first record and takes what else is there; ``librdkafka:2`` the same consumer polled without
waiting every 2 ms, as an event loop's timer would (librdkafka counts its FetchRequests in its
statistics; its own threads' CPU is in the process's). ``lean`` is the least a reader on aiokafka's
own connection and protocol code does per fetch: a loop that builds a FetchRequest, awaits the
answer and walks its record batches (skipping control and aborted ones, as ``read_committed``
must), with none of the consumer's fetcher task, buffers or hand-off. Writes
``bench/results/fetch_cost.json`` and prints a Markdown table.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import uvloop
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.client import AIOKafkaClient
from aiokafka.protocol.fetch import FetchRequest
from aiokafka.record.memory_records import MemoryRecords

from bench.harness.procs import Child
from core.admin import wait_for_broker
from core.kafka import EmbeddedKafka
from core.net import free_port

TOPIC = "fetch-cost"
RECORD = b"r" * 300
"""About a W1 result document's size."""
RESULTS_FILE = Path(__file__).resolve().parents[1] / "results" / "fetch_cost.json"


async def produce(bootstrap: str, partitions: int, rate: float) -> None:
    """Write a round of one record to each partition ``rate`` times a second, until killed."""
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=0)
    await producer.start()
    started, rounds = time.monotonic(), 0
    while True:
        sent = [await producer.send(TOPIC, RECORD, partition=p) for p in range(partitions)]
        await asyncio.gather(*sent)
        rounds += 1
        await asyncio.sleep(max(0.0, started + rounds / rate - time.monotonic()))


async def consume(bootstrap: str, share: int, warmup: float, window: float) -> dict[str, Any]:
    """Read the first ``share`` partitions from their end; CPU per FetchRequest sent over
    ``window`` s."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False,
                                isolation_level="read_committed", fetch_max_wait_ms=500)
    await consumer.start()
    fetches = records = 0
    client_send = consumer._client.send

    async def send(node_id: int, request: Any, **kwargs: Any) -> Any:
        nonlocal fetches
        fetches += type(request).__name__.startswith("FetchRequest")
        return await client_send(node_id, request, **kwargs)

    consumer._client.send = send
    try:
        consumer.assign([TopicPartition(TOPIC, p) for p in range(share)])
        await consumer.seek_to_end()

        async def read() -> None:
            nonlocal records
            while True:
                batch = await consumer.getmany(timeout_ms=1000)
                records += sum(map(len, batch.values()))

        reading = asyncio.create_task(read())
        await asyncio.sleep(warmup)
        fetches0, records0, times0, started = fetches, records, os.times(), time.monotonic()
        await asyncio.sleep(window)
        times1, elapsed = os.times(), time.monotonic() - started
        reading.cancel()
    finally:
        await consumer.stop()
    return measured("aiokafka", share, fetches - fetches0, records - records0, elapsed,
                    times0, times1)


async def consume_lean(bootstrap: str, share: int, warmup: float, window: float
                       ) -> dict[str, Any]:
    """As ``consume``, with a bare fetch loop on aiokafka's client in place of its consumer."""
    partitions = [TopicPartition(TOPIC, p) for p in range(share)]
    client = AIOKafkaClient(bootstrap_servers=bootstrap)
    await client.bootstrap()
    try:
        client.add_topic(TOPIC)
        await client.force_metadata_update()
        ends = await end_offsets(bootstrap, partitions)
        leader = client.cluster.leader_for_partition(partitions[0])
        if any(client.cluster.leader_for_partition(tp) != leader for tp in partitions):
            raise RuntimeError("the lean reader fetches from one broker only")
        positions = {tp.partition: ends[tp] for tp in partitions}
        fetches = records = 0

        async def read() -> None:
            nonlocal fetches, records
            while True:
                records += len(await fetch_values(client, leader, TOPIC, positions))
                fetches += 1

        reading = asyncio.create_task(read())
        await asyncio.sleep(warmup)
        fetches0, records0, times0, started = fetches, records, os.times(), time.monotonic()
        await asyncio.sleep(window)
        times1, elapsed = os.times(), time.monotonic() - started
        if reading.done():
            reading.result()  # raises what ended the reading early
        reading.cancel()
    finally:
        await client.close()
    return measured("lean", share, fetches - fetches0, records - records0, elapsed,
                    times0, times1)


async def end_offsets(bootstrap: str, partitions: list[TopicPartition]
                      ) -> dict[TopicPartition, int]:
    """Where ``partitions`` end now."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap)
    await consumer.start()
    try:
        ends: dict[TopicPartition, int] = await consumer.end_offsets(partitions)
    finally:
        await consumer.stop()
    return ends


async def fetch_values(client: AIOKafkaClient, leader: int, topic: str,
                       positions: dict[int, int], wait_ms: int = 500) -> list[bytes | None]:
    """One ``read_committed`` FetchRequest to ``leader`` for ``topic``'s partitions from
    ``positions`` (partition → offset, moved past what the answer held): the values of the
    committed data records it brought."""
    request = FetchRequest(wait_ms, 1, 52_428_800, 1, [
        (topic, [(p, offset, 1_048_576) for p, offset in positions.items()])])
    response = await client.send(leader, request)
    aborted_at = 1 if response.API_VERSION == 4 else 2  # [lso, (log start,) aborted, …]
    values: list[bytes | None] = []
    for _, answers in response.topics:
        for partition, error, _, *data in answers:
            if not error:
                positions[partition], read = committed_values(
                    data[-1], data[aborted_at], positions[partition])
                values += read
    return values


def committed_values(records: bytes, aborted: list[tuple[int, int]] | None, position: int
                     ) -> tuple[int, list[bytes | None]]:
    """(the next offset, the values of committed data records) of one partition's answer to
    a fetch from ``position``."""
    pending = sorted(aborted or [], key=lambda a: a[1])
    aborting: set[int] = set()
    values: list[bytes | None] = []
    batches = MemoryRecords(records)
    next_offset = position
    while batches.has_next():
        batch = batches.next_batch()
        next_offset = batch.next_offset
        while pending and pending[0][1] <= batch.base_offset:
            aborting.add(pending.pop(0)[0])
        if batch.is_control_batch:
            aborting.discard(batch.producer_id)
        elif not (batch.is_transactional and batch.producer_id in aborting):
            values += [record.value for record in batch]
    return next_offset, values


def measured(client: str, share: int, fetches: int, records: int, elapsed: float,
             times0: os.times_result, times1: os.times_result) -> dict[str, Any]:
    """One row: the fetches and records read over ``elapsed`` s, and the CPU they took."""
    user, system = times1.user - times0.user, times1.system - times0.system
    per = max(fetches, 1)
    return {"client": client, "share": share, "fetches_per_s": round(fetches / elapsed, 1),
            "records_per_fetch": round(records / per, 2),
            "cpu_ms_per_s": round((user + system) / elapsed * 1e3, 1),
            "cpu_us_per_fetch": round((user + system) / per * 1e6, 1),
            "user_us_per_fetch": round(user / per * 1e6, 1),
            "system_us_per_fetch": round(system / per * 1e6, 1)}


def consume_librdkafka(bootstrap: str, share: int, warmup: float, window: float,
                       poll_ms: float) -> dict[str, Any]:
    """As ``consume``, with confluent-kafka's consumer read from this thread: polled without
    waiting every ``poll_ms``, or, at 0, waiting in librdkafka for the first record."""
    from confluent_kafka import OFFSET_END, Consumer
    from confluent_kafka import TopicPartition as Partition

    fetch_requests = [0]

    def note_stats(document: str) -> None:
        brokers = json.loads(document)["brokers"].values()
        fetch_requests.append(sum(b["req"].get("Fetch", 0) for b in brokers if b["nodeid"] >= 0))

    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": "fetch-cost",
                         "enable.auto.commit": False, "isolation.level": "read_committed",
                         "fetch.wait.max.ms": 500, "statistics.interval.ms": 250,
                         "stats_cb": note_stats})
    records = 0

    def read_for(seconds: float) -> None:
        nonlocal records
        until = time.monotonic() + seconds
        while time.monotonic() < until:
            if poll_ms:
                time.sleep(poll_ms / 1000)
                records += len(consumer.consume(num_messages=10_000, timeout=0))
            elif consumer.poll(0.1) is not None:
                records += 1 + len(consumer.consume(num_messages=10_000, timeout=0))

    try:
        consumer.assign([Partition(TOPIC, p, OFFSET_END) for p in range(share)])
        read_for(warmup)
        requests0, records0, times0, started = fetch_requests[-1], records, os.times(), \
            time.monotonic()
        read_for(window)
        times1, elapsed = os.times(), time.monotonic() - started
        read_for(0.3)  # one more statistics report, covering the window
        requests = fetch_requests[-1] - requests0
    finally:
        consumer.close()
    return measured(f"librdkafka:{poll_ms:g}" if poll_ms else "librdkafka", share, requests,
                    records - records0, elapsed, times0, times1)


async def create_topic(bootstrap: str, partitions: int) -> None:
    """The measured topic, replication 1."""
    await wait_for_broker(bootstrap)
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(TOPIC, partitions, 1)])
    finally:
        await admin.close()


def main() -> None:
    """Measure every share on a fresh broker; print and write the table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rate", type=float, default=400.0, help="rounds written a second")
    parser.add_argument("--partitions", type=int, default=12)
    parser.add_argument("--shares", default="1,4,12", help="partitions the consumer reads")
    parser.add_argument("--warmup", type=float, default=5.0)
    parser.add_argument("--window", type=float, default=15.0)
    parser.add_argument("--loop", choices=("uvloop", "asyncio"), default="uvloop")
    parser.add_argument("--clients", default="aiokafka",
                        help="aiokafka, lean (a bare fetch loop on aiokafka's client), "
                        "librdkafka (a waiting thread), librdkafka:MS (polled every MS ms)")
    parser.add_argument("--produce", metavar="BOOTSTRAP", help=argparse.SUPPRESS)
    args = parser.parse_args()
    run = uvloop.run if args.loop == "uvloop" else asyncio.run
    if args.produce:
        uvloop.run(produce(args.produce, args.partitions, args.rate))
        return
    rows = []
    with tempfile.TemporaryDirectory(prefix="bench-fetch-") as tmp, \
            EmbeddedKafka(free_port(), data_dir=Path(tmp) / "kafka") as broker:
        bootstrap = broker.bootstrap_servers
        asyncio.run(create_topic(bootstrap, args.partitions))
        with Child("producer", [sys.executable, "-m", "bench.tools.fetch_cost", "--produce",
                                bootstrap, "--rate", str(args.rate),
                                "--partitions", str(args.partitions)]):
            for share in map(int, args.shares.split(",")):
                for client in args.clients.split(","):
                    if client == "aiokafka":
                        row = run(consume(bootstrap, share, args.warmup, args.window))
                    elif client == "lean":
                        row = run(consume_lean(bootstrap, share, args.warmup, args.window))
                    else:
                        name, _, poll_ms = client.partition(":")
                        if name != "librdkafka":
                            parser.error(f"unknown client {client!r}")
                        row = consume_librdkafka(bootstrap, share, args.warmup, args.window,
                                                 float(poll_ms or 0))
                    print(row, flush=True)
                    rows.append(row)
    RESULTS_FILE.write_text(json.dumps({
        "command": "python -m bench.tools.fetch_cost", "args": vars(args),
        "python": sys.version.split()[0],
        "at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "rows": rows}, indent=2) + "\n")
    print("\n| client | partitions read | fetches/s | records per fetch | CPU ms/s "
          "| CPU µs per fetch | user | system |")
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['client']} | {r['share']} | {r['fetches_per_s']} | {r['records_per_fetch']} "
              f"| {r['cpu_ms_per_s']} | {r['cpu_us_per_fetch']} | {r['user_us_per_fetch']} "
              f"| {r['system_us_per_fetch']} |")


if __name__ == "__main__":
    main()
