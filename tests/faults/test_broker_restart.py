"""The broker is killed and restarted (the embedded one comes back empty): submits answer 503
while it is down, never 2xx, and service resumes without restarting the API or the worker."""

from __future__ import annotations

import asyncio
import time

import httpx
import pytest

from calcstream.broker import EmbeddedBroker, free_port
from consumer.admin import wait_for_broker
from schemas.topics import Topics
from tests.faults.harness import Observer
from tests.kafka import Deployment, create_topics, unique
from tests.processes import ApiProcess, WorkerProcess

DOWN_SUBMITS = 5
AFTER = 200


def body(prefix: str, i: int) -> dict[str, object]:
    return {"id": f"{prefix}-{i}", "op": "sum", "data": [float(i), 1.0]}


async def submit_until_accepted(http: httpx.AsyncClient, doc: dict[str, object]) -> int:
    """What a client does with 503 + Retry-After: try again (here without waiting)."""
    while (response := await http.post("/v1/calculations", json=doc)).status_code == 503:
        pass
    return response.status_code


async def test_submits_fail_fast_while_the_broker_is_down_and_service_resumes_after() -> None:
    broker = EmbeddedBroker(free_port())
    await asyncio.to_thread(broker.start)
    suffix = unique("bounce")
    dep = Deployment(broker.bootstrap_servers,
                     Topics(f"rq-{suffix}", f"rs-{suffix}", f"dl-{suffix}"), f"g-{suffix}", 4)
    worker = api = None
    try:
        await create_topics(dep.bootstrap, dep.topics.all(), dep.partitions)
        worker = WorkerProcess(dep, "w1", CALCSTREAM_SESSION_TIMEOUT_MS="1000",
                               CALCSTREAM_HEARTBEAT_INTERVAL_MS="250")
        api = ApiProcess(dep, "api", free_port())
        await asyncio.gather(worker.wait_for_log(r"partitions assigned \[\(", 60), api.ready())
        pids = (worker.pid, api.pid)
        async with httpx.AsyncClient(base_url=api.base_url, timeout=30) as http:
            before = await asyncio.gather(*(
                http.post("/v1/calculations", params={"wait": 10}, json=body("before", i))
                for i in range(8)))
            assert {r.status_code for r in before} == {200}, api.log()[-3000:]

            await asyncio.to_thread(broker.kill)
            started = time.monotonic()
            down = await asyncio.gather(*(http.post("/v1/calculations", json=body("down", i))
                                          for i in range(DOWN_SUBMITS)))
            down_s = time.monotonic() - started

            await asyncio.to_thread(broker.start)
            restarted_ms = time.time() * 1000
            await wait_for_broker(dep.bootstrap)
            async with Observer(dep) as observer:
                async with asyncio.timeout(60):
                    codes = await asyncio.gather(*(submit_until_accepted(http, body("after", i))
                                                   for i in range(AFTER)))
                ids = {f"after-{i}" for i in range(AFTER)}
                verdict = await observer.settle(ids)
                states = await asyncio.gather(*(http.get(f"/v1/calculations/after-{i}")
                                                for i in range(AFTER)))
        alive = worker.alive() and api.alive() and (worker.pid, api.pid) == pids
        api_log = api.log()
    finally:
        for process in (worker, api):
            if process is not None:
                process.close()
        await asyncio.to_thread(broker.stop)

    resumed_s = (min(verdict.answered_at.values()) - restarted_ms) / 1000
    relayed = sum(1 for s in states if s.json().get("status") == "ok")
    print(f"broker restart: {DOWN_SUBMITS} submits while down answered "
          f"{[r.status_code for r in down]} in {down_s:.2f}s; "
          f"first result {resumed_s:.1f}s after the restart; "
          f"API relayed {relayed}/{AFTER};", verdict.summary())
    assert [r.status_code for r in down] == [503] * DOWN_SUBMITS, "never 2xx while down"
    assert all(r.headers.get("retry-after") for r in down)
    assert alive, "neither the API nor the worker was restarted"
    assert set(codes) <= {200, 202}
    # The API relays every result on the reply topic, the first ones of each re-created
    # partition included (its reader had read past those offsets on the old topic).
    assert relayed == AFTER - len(verdict.lost), api_log[-3000:]
    assert verdict.duplicates == 0
    if verdict.lost and set(verdict.lost) <= set(verdict.unseen):
        # Every lost id is missing from the request topic itself: the embedded broker acked it
        # at an offset it had already given away. Writes can reach the restarted broker before
        # the worker re-created the topic (a producer that kept retrying records answered 503
        # while the broker was down would deliver them then; the API's producer gives them up
        # before it answers 503, which closed this in 14 of 14 runs, against 14 of 22 runs
        # ending here before). The broker keeps writes to a topic that does not exist;
        # creating the topic then sets each partition's next offset to the last batch's base
        # offset + 1, so after a batch of two or more records the next write reuses an offset
        # and is never served. Nothing downstream can answer a request the broker does not
        # hold; a request on the topic without an answer still fails below.
        pytest.xfail(f"the restarted embedded broker acked {sorted(verdict.unseen)} at offsets "
                     "it had given to requests written before the topic was re-created, and "
                     "does not serve them")
    assert verdict.lost == []
