"""The dead-letter topic refuses writes: nothing is committed past the poison record, and once
dead letters can be written again (here: the workers are pointed at a topic that takes them)
every record is answered."""

from __future__ import annotations

import asyncio

from aiokafka import AIOKafkaProducer

from schemas.messages import DeadLetterHeaders
from schemas.topics import Topics
from tests.faults.brokers import create_topics_refusing
from tests.faults.harness import Fleet, Observer, committed_offsets
from tests.kafka import Deployment, request_json, unique

BATCH, IN_FLIGHT = 16, 2
POISON_AT = 40  # offset of the poison record in partition 0


async def produce_to(bootstrap: str, topic: str,
                     records: list[tuple[int, bytes | None, bytes]]) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=2)
    await producer.start()
    try:
        acks = [await producer.send(topic, value, key=key, partition=p)
                for p, key, value in records]
        await asyncio.gather(*acks)
    finally:
        await producer.stop()


def good(name: str, partition: int) -> tuple[int, bytes, bytes]:
    return partition, name.encode(), request_json(name, "sum", [1.0, 2.0])


async def test_no_commit_past_the_poison_while_dead_letters_are_refused(
        kafka_bootstrap: str, guarantee: str) -> None:
    suffix = unique("dlq")
    refused = Topics(f"rq-{suffix}", f"rs-{suffix}", f"dl-{suffix}")
    working = Topics(refused.requests, refused.results, f"dl2-{suffix}")
    before = Deployment(kafka_bootstrap, refused, f"g-{suffix}", 2)
    after = Deployment(kafka_bootstrap, working, before.group, 2)
    topics = {*refused.all(), *working.all(), f"{refused.requests}.attempts"}
    if guarantee == "exactly_once":
        # A transaction that wrote to a partition must write its end marker there, and a topic
        # with max.message.bytes=1 refuses markers too (the broker logs "Received fatal error
        # RecordTooLargeException while sending txn marker"): the transaction could never end,
        # and the partition's next owner never start. So here the dead-letter topic is missing
        # instead: no write reaches it, and the transaction ends.
        topics.discard(refused.dlq)
    await create_topics_refusing(kafka_bootstrap, topics, [refused.dlq], 2)
    records = [good(f"a{i}", 0) for i in range(POISON_AT)]
    records.append((0, None, b"{not json"))  # no id anywhere: only a dead letter answers it
    records += [good(f"b{i}", 0) for i in range(200)] + [good(f"c{i}", 1) for i in range(200)]
    fleet = Fleet(before, {"CALCSTREAM_PROCESSING_GUARANTEE": guarantee,
                           "CALCSTREAM_CREATE_TOPICS": "false",
                           "CALCSTREAM_DRAIN_TIMEOUT_S": "1",
                           "CALCSTREAM_MAX_BATCH_SIZE": str(BATCH),
                           "CALCSTREAM_MAX_IN_FLIGHT": str(IN_FLIGHT)})
    try:
        async with Observer(after) as observer:
            stuck = fleet.start()
            await fleet.ready()
            await produce_to(kafka_bootstrap, refused.requests, records)
            if not fleet.exactly_once:
                # Under exactly_once nothing of the poison's transaction is visible, and it may
                # hold records before the poison too.
                first = {f"a{i}" for i in range(POISON_AT)}
                assert await observer.wait_for(lambda: first <= observer.answered, 30)
            # A missing topic is a metadata timeout per attempt (10 s), a refusing one at once.
            await stuck.wait_for_metric("calcstream_worker_publish_retries",
                                        1 if fleet.exactly_once else 3)
            committed = await committed_offsets(before)
            assert committed.get(0, 0) <= POISON_AT, committed
            # Past the poison, only the batches in flight were answered, and each result
            # once: a retry re-sends what was refused, not the whole batch.
            published = [r.key for r in observer.result_records]
            assert len(published) == len(set(published))
            past = sum(1 for key in published if key.startswith(b"b"))
            assert past <= (0 if fleet.exactly_once else IN_FLIGHT * BATCH)

            assert await stuck.terminate() == 0
            if fleet.exactly_once:
                # The poison's transaction aborted, and so did each one that followed it.
                assert "its batches are dropped" in stuck.log()
            else:
                assert "abandoned" in stuck.log()  # still re-sending the refused dead letter
            assert (await committed_offsets(before)).get(0, 0) <= POISON_AT
            fleet.retire(stuck)

            fleet.start(CALCSTREAM_DLQ_TOPIC=working.dlq)
            verdict = await observer.settle(
                {f"a{i}" for i in range(POISON_AT)} | {f"b{i}" for i in range(200)}
                | {f"c{i}" for i in range(200)} | {f"@0:{POISON_AT}"},
                requests=len(records))
    finally:
        fleet.close()
    print("dead-letter outage", verdict.summary(), "committed while stuck", committed,
          "answered past the poison while stuck", past)
    assert verdict.lost == []
    (dead,) = observer.dead_letters
    headers = DeadLetterHeaders.from_headers(dead.headers)
    assert (headers.original_partition, headers.original_offset) == (0, POISON_AT)
    assert dead.value == b"{not json"
    assert verdict.duplicates <= (0 if fleet.exactly_once else IN_FLIGHT * BATCH)
