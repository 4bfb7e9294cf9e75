"""A request that kills the worker process every time it is computed: counted across restarts
in the attempts journal, dead-lettered after ``max_attempts`` journaled deaths (plus the first,
which nobody journals: a healthy fleet writes nothing per batch), the rest answered."""

from __future__ import annotations

import asyncio

import orjson

from schemas.messages import DeadLetterHeaders
from tests.faults.failpoints import ABORTED
from tests.faults.harness import Fleet, Observer
from tests.kafka import Deployment, produce, request_json

MAX_ATTEMPTS = 3


async def test_a_request_that_kills_every_worker_is_dead_lettered_after_max_attempts(
    fleet: Fleet, deployment: Deployment,
) -> None:
    fleet.env.update(FAULT_ABORT_OP="abort_process",
                     CALCSTREAM_MAX_ATTEMPTS=str(MAX_ATTEMPTS))
    good = [f"g{i}" for i in range(400)]
    records = [(rid.encode(), request_json(rid, "sum", [float(i), 1.0]))
               for i, rid in enumerate(good)]
    records.insert(200, (b"killer", request_json("killer", "abort_process", [1.0])))
    deaths: list[int] = []
    async with Observer(deployment) as observer:
        worker = fleet.start(argv_module="tests.faults.failpoints")
        await fleet.ready()
        await produce(deployment.bootstrap, deployment.topics.requests, records)
        dead_lettered = asyncio.create_task(
            observer.wait_for(lambda: bool(observer.dead_letters), timeout=90))
        # A supervisor, as Kubernetes would be: every worker that dies is replaced.
        while not dead_lettered.done() and len(deaths) <= MAX_ATTEMPTS + 2:
            exited = asyncio.create_task(asyncio.to_thread(worker.proc.wait))
            await asyncio.wait({exited, dead_lettered}, return_when=asyncio.FIRST_COMPLETED)
            if exited.done():
                deaths.append(exited.result())
                fleet.retire(worker)
                worker = fleet.start(argv_module="tests.faults.failpoints")
        assert await dead_lettered, fleet.logs()
        verdict = await observer.settle({*good, "killer"}, requests=len(records))
        killed_by = orjson.loads(next(r.value for r in observer.result_records
                                      if r.key == b"killer"))
    print("crash loop: worker exits", deaths, verdict.summary())
    assert deaths == [ABORTED] * (MAX_ATTEMPTS + 1), fleet.logs()
    assert verdict.lost == [] and verdict.invalid == []
    (dead,) = observer.dead_letters
    headers = DeadLetterHeaders.from_headers(dead.headers)
    assert (headers.stage, headers.error_class, headers.request_id) == (
        "compute", "CrashLoop", "killer")
    assert killed_by["status"] == "error" and killed_by["error"]["code"] == "crash_loop"
    # Records that shared a batch with the killer were tried again, alone, and answered.
    assert verdict.duplicates <= 2 * 512
