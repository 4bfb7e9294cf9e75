"""Bad input straight into the request topic, from an outside client (confluent-kafka).

Malformed records are dead-lettered with their full headers and never block a partition;
requests that fail in compute get one error result each (no redelivery loop).
"""

from __future__ import annotations

import asyncio
from collections import Counter

import orjson

from schemas.messages import DeadLetterHeaders
from tests.faults.harness import Fleet, Load, Observer
from tests.faults.inputs import mixed, produce_outside
from tests.kafka import Deployment, TopicReader

MALFORMED = 1000
GOOD = 3000
SINGULAR = 50

async def test_malformed_records_are_dead_lettered_and_nothing_blocks(
    fleet: Fleet, deployment: Deployment,
) -> None:
    batch = mixed(GOOD, MALFORMED, SINGULAR)
    async with Observer(deployment) as observer:
        fleet.start()
        fleet.start()
        await fleet.ready()
        acked = await asyncio.to_thread(produce_outside, deployment.bootstrap,
                                        deployment.topics.requests, batch, 4000.0)
        assert acked == len(batch)
        async with TopicReader(deployment.bootstrap, deployment.topics.requests) as reader:
            written = await reader.read_count(len(batch))
        await observer.wait_for(lambda: len(observer.dead_letters) >= MALFORMED, 60)
        verdict = await observer.settle(
            {rid for rid in (f"good-{i}" for i in range(GOOD))} | {"too-big"}
            | {f"singular-{i}" for i in range(SINGULAR)}, requests=len(batch))
        explained = ""
        if verdict.lost or verdict.dead_letters != MALFORMED:
            explained = await observer.explain_lost(verdict)

    stall = verdict.stall_ms(0)
    print("poison", verdict.summary(), "longest partition stall ms", stall,
          "max latency by partition ms", verdict.max_latency_by_partition())
    assert verdict.lost == [], f"{explained}\n{fleet.logs(tail=20_000)}"
    assert verdict.duplicates == 0, "a failing request must not be redelivered"
    assert (verdict.phantoms, verdict.invalid) == ([], [])

    # 1,000 dead letters, one per malformed record, each pointing at it with every header.
    assert verdict.dead_letters == MALFORMED, explained
    assert verdict.duplicate_dead_letters == 0
    originals = {(r.partition, r.offset): r for r in written}
    stages: Counter[str] = Counter()
    for dead in observer.dead_letters:
        h = DeadLetterHeaders.from_headers(dead.headers)
        original = originals[(h.original_partition, h.original_offset)]
        assert (dead.key, dead.value) == (original.key, original.value)
        assert h.original_topic == deployment.topics.requests
        assert h.original_timestamp == original.timestamp
        assert h.consumer_group == deployment.group
        assert h.worker in {"w1", "w2"} and h.error_class and h.error_message
        stages[h.stage] += 1
    assert set(stages) == {"decode", "validate"}

    docs = {orjson.loads(r.value)["id"]: orjson.loads(r.value) for r in observer.result_records}
    for i in range(SINGULAR):
        assert docs[f"singular-{i}"]["error"]["code"] == "singular_matrix"
    assert docs["too-big"]["status"] == "error"
    assert docs["too-big"]["error"]["code"] == "result_too_large"
    assert all(docs[f"good-{i}"]["result"] == Load.expected(f"g-{i}") for i in range(GOOD))
    readable = [rid for rid in docs if rid.startswith("bad-")]
    assert readable and all(docs[rid]["error"]["code"] == "invalid_request" for rid in readable)
