"""The API dies after the broker acknowledged requests and before the clients heard back; the
clients retry with the same ids against the restarted API: one logical result each."""

from __future__ import annotations

import asyncio

import httpx
import orjson

from core.net import free_port
from tests.faults.api_failpoint import CRASH_EXIT
from tests.faults.harness import Fleet, Observer
from tests.kafka import Deployment
from tests.processes import ApiProcess

CLIENTS = 20


def body(i: int) -> dict[str, object]:
    return {"id": f"retry-{i}", "op": "sum_of_squares", "data": [float(i), 1.0, 2.0]}


async def test_a_retry_after_the_api_died_before_answering_gives_one_logical_result(
    fleet: Fleet, deployment: Deployment,
) -> None:
    port = free_port()
    crashing = ApiProcess(deployment, "api-crashing", port, module="tests.faults.api_failpoint")
    restarted: ApiProcess | None = None
    try:
        async with Observer(deployment) as observer:
            fleet.start()
            await asyncio.gather(fleet.ready(), crashing.ready())
            async with httpx.AsyncClient(base_url=crashing.base_url, timeout=10) as http:
                first = await asyncio.gather(*(
                    http.post("/v1/calculations", json=body(i),
                              headers={"x-fault": "crash-before-response"})
                    for i in range(CLIENTS)), return_exceptions=True)
            assert all(isinstance(o, httpx.TransportError) for o in first), first
            assert await asyncio.to_thread(crashing.proc.wait, 30) == CRASH_EXIT

            restarted = ApiProcess(deployment, "api", port)
            await restarted.ready()
            async with httpx.AsyncClient(base_url=restarted.base_url, timeout=30) as http:
                retries = await asyncio.gather(*(
                    http.post("/v1/calculations", params={"wait": 10}, json=body(i))
                    for i in range(CLIENTS)))
                states = await asyncio.gather(*(
                    http.get(f"/v1/calculations/retry-{i}") for i in range(CLIENTS)))
            ids = {f"retry-{i}" for i in range(CLIENTS)}
            verdict = await observer.settle(ids)
    finally:
        crashing.close()
        if restarted is not None:
            restarted.close()

    assert [r.status_code for r in retries] == [200] * CLIENTS, [r.text for r in retries]
    assert verdict.lost == [] and verdict.invalid == []
    copies: dict[str, list[dict[str, object]]] = {}
    for record in observer.result_records:
        doc = orjson.loads(record.value)
        copies.setdefault(doc["id"], []).append(doc)
    for i, (retry, state) in enumerate(zip(retries, states, strict=True)):
        want = float(i * i + 5)
        assert retry.json()["result"] == state.json()["result"] == want
        # Every result record of the id says the same thing: one logical result.
        assert {(d["status"], d["result"]) for d in copies[f"retry-{i}"]} == {("ok", want)}
    republished = sum(1 for docs in copies.values() if len(docs) > 1)
    print("api crash", verdict.summary(), "request records", verdict.request_records,
          "ids answered twice (published again by the restarted API)", republished)
