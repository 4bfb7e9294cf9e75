"""Inputs from outside clients: malformed records of every kind, and a librdkafka producer."""

from __future__ import annotations

import time
from typing import NamedTuple

import orjson
from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, Producer, TopicPartition

from schemas.encoding import BINARY, CONTENT_TYPE_HEADER

Record = tuple[bytes | None, bytes | None, list[tuple[str, bytes]]]


class OutsideRecord(NamedTuple):
    """A record as librdkafka read it."""

    partition: int
    offset: int
    key: bytes | None
    value: bytes | None


def malformed(i: int) -> Record:
    """Eleven ways to be wrong; ids (when readable) start with ``bad-``."""
    rid = f"bad-{i}"
    key = rid.encode()
    kinds: list[Record] = [
        (key, b"{not json", []),
        (None, b"\x00\xff\xfe binary garbage", []),
        (key, orjson.dumps({"id": rid, "op": "sum"}), []),
        (key, orjson.dumps({"id": rid, "op": "no_such_op", "data": [1.0]}), []),
        (key, orjson.dumps({"id": rid, "op": "dot", "data": [1.0, 2.0, 3.0]}), []),
        (key, b'{"id": "%s", "op": "sum", "data": [NaN]}' % key, []),
        (key, b"\x05\x00", [(CONTENT_TYPE_HEADER, BINARY.encode())]),
        (key, orjson.dumps({"id": rid, "op": "sum", "data": [1.0]}),
         [(CONTENT_TYPE_HEADER, b"text/xml")]),
        (None, orjson.dumps({"id": "not a valid id!", "op": "sum", "data": [1.0]}), []),
        (key, None, []),
        (key, orjson.dumps({"id": rid, "op": "sum", "data": [1.0], "evil": True}), []),
    ]
    return kinds[i % len(kinds)]


def mixed(good: int, malformed_count: int, singular: int) -> list[Record]:
    """Good (``good-<i>``, ``sum_of_squares([i % 97, 1, 2])``), malformed, failing-in-compute
    (``singular-<i>``) and one oversized (``too-big``) request, interleaved."""
    out: list[Record] = []
    bad = 0
    every = max(1, good // max(1, malformed_count))
    for i in range(good):
        rid = f"good-{i}"
        out.append((rid.encode(), orjson.dumps(
            {"id": rid, "op": "sum_of_squares", "data": [float(i % 97), 1.0, 2.0]}), []))
        if i % every == 0 and bad < malformed_count:
            out.append(malformed(bad))
            bad += 1
        if i % 60 == 0 and i // 60 < singular:
            sid = f"singular-{i // 60}"
            out.append((sid.encode(), orjson.dumps(
                {"id": sid, "op": "inv", "data": [1.0, 2.0, 2.0, 4.0]}), []))
    while bad < malformed_count:
        out.append(malformed(bad))
        bad += 1
    # A result of 4096 x 4096 numbers is far over the 8 MiB record limit.
    out.append((b"too-big", orjson.dumps({"id": "too-big", "op": "matmul", "data": [1.0] * 8192,
                                           "args": {"m": 4096, "k": 1, "n": 4096}}), []))
    return out


def produce_outside(bootstrap: str, topic: str, batch: list[Record], rate: float) -> int:
    """Write with librdkafka, paced at ``rate`` records per second; return the acked count."""
    producer = Producer({"bootstrap.servers": bootstrap, "acks": "all", "linger.ms": 5})
    acked = 0

    def delivered(err: object, msg: object) -> None:
        nonlocal acked
        acked += err is None

    started = time.monotonic()
    for n, (key, value, headers) in enumerate(batch):
        producer.produce(topic, key=key, value=value, headers=headers, on_delivery=delivered)
        if n % 100 == 0:
            producer.poll(0)
            ahead = n / rate - (time.monotonic() - started)
            if ahead > 0:
                time.sleep(ahead)
    producer.flush(30)
    return acked


def read_outside(bootstrap: str, topic: str, timeout: float = 30.0) -> list[OutsideRecord]:
    """Every record of ``topic`` from the beginning, read with librdkafka (no group)."""
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": "calcstream-tests-outside",
                         "enable.auto.commit": False, "enable.partition.eof": True})
    try:
        partitions = consumer.list_topics(topic, timeout=10).topics[topic].partitions
        consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in partitions])
        at_end: set[int] = set()
        out: list[OutsideRecord] = []
        deadline = time.monotonic() + timeout
        while len(at_end) < len(partitions) and time.monotonic() < deadline:
            msg = consumer.poll(0.5)
            if msg is None:
                continue
            err, partition, offset = msg.error(), msg.partition(), msg.offset()
            assert partition is not None
            if err is not None:
                if err.code() == KafkaError._PARTITION_EOF:
                    at_end.add(partition)
                continue
            assert offset is not None
            at_end.discard(partition)
            out.append(OutsideRecord(partition, offset, msg.key(), msg.value()))
        return out
    finally:
        consumer.close()
