"""A worker frozen (SIGSTOP) past its session timeout, then thawed."""

from __future__ import annotations

import asyncio

import orjson

from schemas.messages import DeadLetterHeaders
from tests.faults import scenarios
from tests.faults.harness import Fleet, Load, Observer
from tests.faults.inputs import Record, produce_outside
from tests.kafka import Deployment


async def test_a_frozen_worker_loses_its_partitions_and_its_late_commit_is_refused(
    fleet: Fleet,
) -> None:
    run = await scenarios.sigstop(fleet, rate=600)
    v = run.verdict
    print("sigstop", run.figures())
    if fleet.exactly_once:
        # Its open transaction was aborted when the other worker took the partitions over;
        # thawed, it is fenced at its next write.
        assert run.notes["fenced_in_log"] >= 1, fleet.logs()
        assert run.notes["fenced"] >= 1
        assert v.duplicates == 0, f"{v.duplicated[:5]}\n{fleet.logs()}"
    else:
        assert run.notes["refused_in_log"] >= 1, fleet.logs()
        assert run.notes["refused_commits"] >= 1
    assert v.lost == [], f"{len(v.lost)} lost\n{fleet.logs()}"
    # Late results are copies: same id, valid against the contract, the right value.
    assert (v.phantoms, v.invalid, run.wrong_values) == ([], [], [])


GOOD = 4000
STALLS = 3


async def test_a_batch_that_holds_the_interpreter_past_the_session_loses_nothing(
    fleet: Fleet, deployment: Deployment,
) -> None:
    """Compute that never releases the interpreter lock starves the worker's heartbeats: it
    loses its partitions mid-batch, the other worker takes them over (journaled attempts make
    the half-computed records go one at a time), then it rejoins and the group rebalances again
    while that is going on. Through all of it, every record is answered. Under exactly_once
    the stalled batch is fenced and never commits."""
    batch: list[Record] = []
    for i in range(GOOD):
        rid = f"good-{i}"
        batch.append((rid.encode(), orjson.dumps(
            {"id": rid, "op": "sum_of_squares", "data": [float(i % 97), 1.0, 2.0]}), []))
        if i % (GOOD // STALLS) == GOOD // (2 * STALLS):
            sid = f"stall-{i}"
            batch.append((sid.encode(), orjson.dumps({"id": sid, "op": "stall", "data": [1.0]}),
                          []))
    stalls = {rid.decode() for rid, _, _ in batch if rid and rid.startswith(b"stall-")}
    async with Observer(deployment) as observer:
        for _ in range(2):
            fleet.start("tests.faults.failpoints", FAULT_HOLD_OP="stall:1.6")
        await fleet.ready()
        acked = await asyncio.to_thread(produce_outside, deployment.bootstrap,
                                        deployment.topics.requests, batch, 2000.0)
        assert acked == len(batch)
        verdict = await observer.settle({f"good-{i}" for i in range(GOOD)} | stalls,
                                        requests=len(batch))
    print("interpreter stall", verdict.summary())
    assert verdict.lost == [], f"{len(verdict.lost)} lost: {verdict.lost[:20]}\n{fleet.logs()}"
    assert (verdict.phantoms, verdict.invalid) == ([], [])
    if fleet.exactly_once:
        assert verdict.duplicates == 0, verdict.duplicated[:5]
    docs = {orjson.loads(r.value)["id"]: orjson.loads(r.value) for r in observer.result_records}
    assert all(docs[f"good-{i}"]["result"] == Load.expected(f"g-{i}") for i in range(GOOD))
    if fleet.exactly_once:
        # A worker that loses its partition mid-batch is fenced: that batch never commits, and
        # a record that costs its worker the partition every time it is computed is counted
        # like one that kills it, then dead-lettered (a result that says so, and a dead letter).
        outcomes = {(docs[sid]["status"], (docs[sid]["error"] or {}).get("code"))
                    for sid in stalls}
        assert outcomes <= {("ok", None), ("error", "crash_loop")}, outcomes
        crashed = {sid for sid in stalls if docs[sid]["status"] == "error"}
        assert {DeadLetterHeaders.from_headers(d.headers).request_id
                for d in observer.dead_letters} == crashed
    else:
        assert all(docs[sid]["status"] == "ok" for sid in stalls)
    assert "partitions revoked" in fleet.logs(tail=None)
