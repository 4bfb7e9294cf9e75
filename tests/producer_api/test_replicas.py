"""Reply routing with API replicas as processes behind a real nginx, a worker process and the
session broker: each replica reads its share of the reply topic, any replica answers any id,
and replicas joining, stopping (SIGTERM) and crashing (SIGKILL) lose no waited-for result."""

from __future__ import annotations

import asyncio
import contextlib
import io
import itertools
import re
import signal
import uuid
from collections.abc import AsyncIterator, Sequence
from pathlib import Path

import httpx
import numpy as np
import orjson
from aiokafka import AIOKafkaConsumer, TopicPartition
from websockets.asyncio.client import connect

from core.keys import Scope, new_key, write_keys
from core.net import free_port
from producer_api.routing import ReplyRoutes
from producer_api.usecase import QUEUED_MAX_BYTES
from tests.balancer import Nginx
from tests.kafka import Deployment, produce, request_json
from tests.processes import ApiProcess, WorkerProcess
from tests.waiting import eventually

_OWNED = re.compile(r"reply partitions owned \[([0-9, ]*)\]")


def owned(replica: ApiProcess) -> set[int]:
    """The share the replica last said it owns."""
    found = _OWNED.findall(replica.log())
    return {int(p) for p in found[-1].split(",") if p.strip()} if found else set()


async def shares_settle(replicas: Sequence[ApiProcess], partitions: int,
                        timeout: float = 45.0) -> dict[int, set[int]]:
    """Wait until the replicas' shares split every partition between them; port → share."""
    async def split() -> bool:
        shares = [owned(r) for r in replicas]
        union: set[int] = set().union(*shares)
        return (all(shares) and sum(map(len, shares)) == partitions
                and union == set(range(partitions)))
    await eventually(split, timeout, "the replicas' shares to cover the reply topic")
    return {port(r): owned(r) for r in replicas}


def port(replica: ApiProcess) -> int:
    """The replica's port."""
    return int(replica.base_url.rpartition(":")[2])


def routes(partitions: int) -> ReplyRoutes:
    """Where ids' results go on a reply topic of ``partitions``."""
    return ReplyRoutes(range(partitions))


def id_on(where: ReplyRoutes, share: set[int], prefix: str) -> str:
    """A fresh client id (``prefix-…``) whose result goes to a partition of ``share``."""
    return next(candidate for candidate in
                (f"{prefix}-{uuid.uuid4().hex[:8]}" for _ in itertools.count())
                if where.partition_of(candidate) in share)


@contextlib.asynccontextmanager
async def cluster(dep: Deployment, replicas: int, spare: int = 0, advertise: bool = False,
                  **env: str,
                  ) -> AsyncIterator[tuple[WorkerProcess, list[ApiProcess], list[int], Nginx]]:
    """A worker, ``replicas`` API processes (ready, with ``env``) and nginx over them and
    ``spare`` ports for replicas started later; with ``advertise``, each replica advertises
    its URL."""
    ports = [free_port() for _ in range(replicas + spare)]
    worker = WorkerProcess(dep, "worker")
    apis = [ApiProcess(dep, f"api-{i}", p, **env, **({"CALCSTREAM_ADVERTISED_URL":
                                                      f"http://127.0.0.1:{p}"}
                                                     if advertise else {}))
            for i, p in enumerate(ports[:replicas])]
    nginx = Nginx(ports)
    try:
        await asyncio.gather(*(a.ready() for a in apis))
        await worker.wait_for_assignment(dep.partitions)
        yield worker, apis, ports, nginx
    finally:
        nginx.close()
        for process in (*apis, worker):
            process.close()


async def requests_published(dep: Deployment) -> int:
    """Records on the request topic."""
    consumer = AIOKafkaConsumer(bootstrap_servers=dep.bootstrap)
    await consumer.start()
    try:
        tps = [TopicPartition(dep.topics.requests, p) for p in range(dep.partitions)]
        return sum((await consumer.end_offsets(tps)).values())
    finally:
        await consumer.stop()


async def test_any_replica_answers_for_an_id_another_accepted(deployment: Deployment) -> None:
    async with cluster(deployment, 2) as (worker, (a, b), _, nginx):
        shares = await shares_settle([a, b], deployment.partitions)
        where = routes(deployment.partitions)
        by_port = {port(a): a, port(b): b}
        async with httpx.AsyncClient(timeout=30) as http:
            # Submits through nginx, waited on at the replica that accepted them: each id
            # the API assigned lands on that replica's share.
            answered = []
            for i in range(6):
                r = await http.post(f"{nginx.base_url}/v1/calculations?wait=20",
                                    json={"op": "sum", "data": [i, 1]})
                assert r.status_code == 200, r.text
                accepted_by = int(r.headers["x-upstream"].rpartition(":")[2])
                doc = r.json()
                assert doc["result"] == i + 1
                assert where.partition_of(doc["id"]) in shares[accepted_by]
                answered.append((accepted_by, doc))
            assert {p for p, _ in answered} == set(by_port), "round robin reached both"

            # A client id on one of B's partitions, waited for on A: A reads that partition
            # from where it ended before the publish, that one result and not B's earlier
            # ones there (five of them; from the recovery window A would read six).
            on_b = {min(shares[port(b)])}
            for i in range(5):
                r = await http.post(f"{b.base_url}/v1/calculations?wait=20",
                                    json={"id": id_on(where, on_b, "earlier"), "op": "sum",
                                          "data": [i, 1]})
                assert r.status_code == 200, r.text
            metrics = (await http.get(f"{a.base_url}/metrics")).text
            assert _metric(metrics, "calcstream_api_reply_partitions{api=",
                           'role="borrowed"') == 0
            read_before = _metric(metrics, "calcstream_api_result_records_total{", "api=")
            r = await http.post(f"{a.base_url}/v1/calculations?wait=20",
                                json={"id": id_on(where, on_b, "waited"), "op": "sum",
                                      "data": [20, 1]})
            assert r.status_code == 200 and r.json()["result"] == 21, r.text
            metrics = (await http.get(f"{a.base_url}/metrics")).text
            assert _metric(metrics, "calcstream_api_result_records_total{", "api=") \
                == read_before + 1
            # The same for a WebSocket submit, whose watch begins once the broker acked it.
            async with connect(a.base_url.replace("http", "ws") + "/v1/ws") as ws:
                await ws.send(orjson.dumps({"type": "submit", "request": {
                    "id": id_on(where, on_b, "socket"), "op": "sum", "data": [30, 1]}}).decode())
                assert orjson.loads(await ws.recv())["type"] == "accepted"
                message = orjson.loads(await asyncio.wait_for(ws.recv(), 30))
            assert message["type"] == "result" and message["result"] == 31, message
            metrics = (await http.get(f"{a.base_url}/metrics")).text
            assert _metric(metrics, "calcstream_api_result_records_total{", "api=") \
                == read_before + 2

            # ... and the other replica answers GET for each of them.
            for accepted_by, doc in answered:
                other = next(r for p, r in by_port.items() if p != accepted_by)
                r = await http.get(f"{other.base_url}/v1/calculations/{doc['id']}")
                assert r.status_code == 200, r.text
                assert r.json() == doc

            # A WebSocket on B watches an id A accepted, before its result exists.
            worker.pause()
            try:
                r = await http.post(f"{a.base_url}/v1/calculations",
                                    json={"op": "sum", "data": [40, 2]})
                assert r.status_code == 202
                watched = r.json()["id"]
                assert where.partition_of(watched) in shares[port(a)]
                async with connect(b.base_url.replace("http", "ws") + "/v1/ws") as ws:
                    await ws.send(orjson.dumps({"type": "subscribe", "ids": [watched]}).decode())
                    assert orjson.loads(await ws.recv())["type"] == "subscribed"
                    worker.resume()
                    message = orjson.loads(await asyncio.wait_for(ws.recv(), 30))
                assert message["type"] == "result" and message["id"] == watched
                assert message["result"] == 42
            finally:
                worker.resume()

            # A client id accepted by A whose result goes to B's share: polling A still
            # sees it answered.
            poll_id = id_on(where, shares[port(b)], "poll")
            r = await http.post(f"{a.base_url}/v1/calculations",
                                json={"id": poll_id, "op": "sum", "data": [7, 7]})
            assert r.status_code == 202

            async def polled_answered() -> bool:
                r = await http.get(f"{a.base_url}/v1/calculations/{poll_id}")
                return r.status_code == 200 and r.json()["status"] == "ok"
            await eventually(polled_answered, 30, "the polled id answered on A")

            # A client id re-posted to the other replica with ?wait= gets its result there.
            body = {"id": f"client-{uuid.uuid4().hex[:8]}", "op": "sum", "data": [5, 5]}
            r = await http.post(f"{a.base_url}/v1/calculations", json=body)
            assert r.status_code == 202
            r = await http.post(f"{b.base_url}/v1/calculations?wait=20", json=body)
            assert r.status_code == 200 and r.json()["result"] == 10

            # An outside producer's request, without the header: keyed by id as before, and
            # answered through nginx (by whichever replica) all the same.
            outside = f"outside-{uuid.uuid4().hex[:8]}"
            await produce(deployment.bootstrap, deployment.topics.requests,
                          [(outside.encode(), request_json(outside, "sum", [1.0, 2.0]))])

            async def answered_everywhere() -> bool:
                for replica in (a, b):
                    r = await http.get(f"{replica.base_url}/v1/calculations/{outside}")
                    if r.status_code != 200 or r.json()["status"] != "ok":
                        return False
                return True
            await eventually(answered_everywhere, 30, "the outside producer's result")
            r = await http.get(f"{nginx.base_url}/v1/calculations/{outside}")
            assert r.json()["result"] == 3

        # Each replica read its share, not the whole topic.
        assert shares[port(a)].isdisjoint(shares[port(b)])


async def test_a_poll_of_another_replicas_id_is_asked_of_that_replica(
    deployment: Deployment,
) -> None:
    """With advertised URLs, a GET of an id whose partition the other replica owns is
    forwarded to it: answered the same, and the asked replica reads none of its partitions."""
    async with cluster(deployment, 2, advertise=True) as (worker, (a, b), _, nginx):
        shares = await shares_settle([a, b], deployment.partitions)
        where = routes(deployment.partitions)
        async with httpx.AsyncClient(timeout=30) as http:
            answers = {}
            for owner in (a, b):
                rid = id_on(where, shares[port(owner)], "fwd")
                r = await http.post(f"{owner.base_url}/v1/calculations?wait=20",
                                    json={"id": rid, "op": "sum", "data": [2, 3]})
                assert r.status_code == 200, r.text
                answers[rid] = (owner, r.json())

            async def both_know_the_owners() -> bool:
                for replica in (a, b):
                    rid, (_, doc) = next((k, v) for k, v in answers.items()
                                         if v[0] is not replica)
                    r = await http.get(f"{replica.base_url}/v1/calculations/{rid}")
                    if r.status_code != 200 or r.json() != doc:
                        return False
                    metrics = (await http.get(f"{replica.base_url}/metrics")).text
                    if _metric(metrics, "calcstream_api_forwarded_total{api=",
                               'outcome="answered"') < 1:
                        return False
                return True
            # The map arrives with the group's assignment, which may lag the shares' log line.
            await eventually(both_know_the_owners, 30, "GETs forwarded to the owner")

            # A binary answer comes back whole: the .npy and the header with the other fields.
            rid, (owner, doc) = next(iter(answers.items()))
            asked = b if owner is a else a
            r = await http.get(f"{asked.base_url}/v1/calculations/{rid}",
                               headers={"accept": "application/x-npy"})
            assert r.status_code == 200 and r.headers["content-type"] == "application/x-npy"
            assert float(np.load(io.BytesIO(r.content))) == doc["result"]
            assert orjson.loads(r.headers["calcstream-result"])["id"] == rid

            # Polling through the round-robin balancer: every answer right, and neither
            # replica borrowed a partition for it.
            for rid, (_, doc) in answers.items():
                for _ in range(4):
                    r = await http.get(f"{nginx.base_url}/v1/calculations/{rid}")
                    assert r.status_code == 200 and r.json() == doc
            unknown = f"never-{uuid.uuid4().hex[:8]}"
            for replica in (a, b):
                r = await http.get(f"{replica.base_url}/v1/calculations/{unknown}")
                assert r.status_code == 404 and r.json()["error"]["code"] == "not_found", r.text
            for replica in (a, b):
                metrics = (await http.get(f"{replica.base_url}/metrics")).text
                assert _metric(metrics, "calcstream_api_reply_partitions{api=",
                               'role="borrowed"') == 0
                assert _metric(metrics, "calcstream_api_forwarded_total{api=",
                               'outcome="failed"') == 0

            # A client id accepted by A, on B's partition, not computed yet: B has never seen
            # it, and A, which has, answers "queued" rather than B's 404.
            queued = id_on(where, shares[port(b)], "fwd-q")
            worker.pause()
            try:
                r = await http.post(f"{a.base_url}/v1/calculations",
                                    json={"id": queued, "op": "sum", "data": [1, 1]})
                assert r.status_code == 202, r.text
                r = await http.get(f"{a.base_url}/v1/calculations/{queued}")
                assert r.status_code == 200 and r.json()["status"] == "queued", r.text
                metrics = (await http.get(f"{a.base_url}/metrics")).text
                assert _metric(metrics, "calcstream_api_reply_partitions{api=",
                               'role="borrowed"') == 0
            finally:
                worker.resume()

            async def computed() -> bool:
                r = await http.get(f"{a.base_url}/v1/calculations/{queued}")
                return r.status_code == 200 and r.json()["status"] == "ok"
            await eventually(computed, 30, "the queued id answered")


async def test_a_wait_for_an_earlier_id_elsewhere_asks_its_owner(deployment: Deployment,
                                                                 tmp_path: Path) -> None:
    """With advertised URLs, a WebSocket watch and a ``?wait=`` re-post of an id published
    earlier, on the other replica's partition, ask that replica with the client's key: a
    result it has comes from it, and one still to come is read from where it has read the
    partition, not from the recovery window (five results there)."""
    keys_file = tmp_path / "keys.json"
    token, key = new_key("acme", frozenset({Scope.SUBMIT, Scope.READ, Scope.ADMIN}), "acme")
    write_keys(keys_file, [key])
    async with cluster(deployment, 2, advertise=True, CALCSTREAM_API_KEYS_FILE=str(keys_file),
                       CALCSTREAM_REPLY_LOOKUP_S="60") as (worker, (a, b), _, _nginx):
        shares = await shares_settle([a, b], deployment.partitions)
        where = routes(deployment.partitions)
        on_b = {min(shares[port(b)])}
        socket_url = a.base_url.replace("http", "ws") + "/v1/ws"
        auth = orjson.dumps({"type": "auth", "key": token}).decode()
        async with httpx.AsyncClient(timeout=30,
                                     headers={"authorization": f"Bearer {token}"}) as http:
            done = [id_on(where, on_b, "earlier") for _ in range(5)]
            for i, rid in enumerate(done):
                r = await http.post(f"{b.base_url}/v1/calculations?wait=20",
                                    json={"id": rid, "op": "sum", "data": [i, 1]})
                assert r.status_code == 200, r.text

            async def on_a(name: str, label: str = "api=") -> float:
                metrics = (await http.get(f"{a.base_url}/metrics")).text
                return _metric(metrics, name, label)

            async def a_knows_the_owner() -> bool:
                r = await http.get(f"{a.base_url}/v1/calculations/{done[0]}")
                return r.status_code == 200 and await on_a(
                    "calcstream_api_forwarded_total{api=", 'outcome="answered"') >= 1
            await eventually(a_knows_the_owner, 30, "A to forward to B")
            records = "calcstream_api_result_records_total{"
            read_before = await on_a(records)

            # A socket on A watches an id B has the result of: B's answer is delivered.
            async with connect(socket_url) as ws:
                await ws.send(auth)  # the key in a message, not the handshake
                assert orjson.loads(await ws.recv())["type"] == "authenticated"
                await ws.send(orjson.dumps({"type": "subscribe", "ids": [done[4]]}).decode())
                assert orjson.loads(await ws.recv())["type"] == "subscribed"
                message = orjson.loads(await asyncio.wait_for(ws.recv(), 30))
            assert message["type"] == "result" and message["id"] == done[4]
            assert message["result"] == 5
            assert await on_a(records) == read_before

            async def asked(count: float) -> None:
                async def enough() -> bool:
                    return await on_a("calcstream_api_forwarded_total{api=",
                                      'outcome="answered"') >= count
                await eventually(enough, 30, "A to ask B")

            # Not computed yet, accepted by B: A's watch reads that one result when it comes.
            pending = id_on(where, on_b, "pending")
            forwarded = await on_a("calcstream_api_forwarded_total{api=", 'outcome="answered"')
            worker.pause()
            try:
                r = await http.post(f"{b.base_url}/v1/calculations",
                                    json={"id": pending, "op": "sum", "data": [40, 2]})
                assert r.status_code == 202, r.text
                async with connect(socket_url, additional_headers={
                        "authorization": f"Bearer {token}"}) as ws:  # the key in the handshake
                    await ws.send(orjson.dumps({"type": "subscribe", "ids": [pending]}).decode())
                    assert orjson.loads(await ws.recv())["type"] == "subscribed"
                    await asked(forwarded + 1)
                    worker.resume()
                    message = orjson.loads(await asyncio.wait_for(ws.recv(), 30))
            finally:
                worker.resume()
            assert message["type"] == "result" and message["result"] == 42, message
            assert await on_a(records) == read_before + 1

            # A client id A accepted earlier (202), re-posted to A with ?wait=.
            body = {"id": id_on(where, on_b, "again"), "op": "sum", "data": [7, 7]}
            forwarded = await on_a("calcstream_api_forwarded_total{api=", 'outcome="answered"')
            worker.pause()
            try:
                r = await http.post(f"{a.base_url}/v1/calculations", json=body)
                assert r.status_code == 202, r.text
                waited = asyncio.ensure_future(
                    http.post(f"{a.base_url}/v1/calculations?wait=20", json=body))
                await asked(forwarded + 1)
                worker.resume()
                r = await waited
            finally:
                worker.resume()
            assert r.status_code == 200 and r.json()["result"] == 14, r.text
            assert await on_a(records) == read_before + 2

            # ... and once B has its result: B's answer, nothing read on A (once A no longer
            # borrows that partition for the waits before).
            async def nothing_borrowed() -> bool:
                return await on_a("calcstream_api_reply_partitions{api=",
                                  'role="borrowed"') == 0
            await eventually(nothing_borrowed, 30, "A to let the partition go")
            # (A 20×20 result: larger than any queued state, so taken without reading it.)
            column = [float(i) for i in range(1, 21)]
            body = {"id": id_on(where, on_b, "computed"), "op": "matmul",
                    "data": column + column, "args": {"m": 20, "k": 1, "n": 20}}
            r = await http.post(f"{a.base_url}/v1/calculations", json=body)
            assert r.status_code == 202, r.text

            async def computed_at_b() -> bool:
                r = await http.get(f"{b.base_url}/v1/calculations/{body['id']}")
                return r.status_code == 200 and r.json()["status"] == "ok"
            await eventually(computed_at_b, 30, "B to have the result")
            r = await http.post(f"{a.base_url}/v1/calculations?wait=20", json=body)
            assert r.status_code == 200, r.text
            assert r.json()["result"] == [[i * j for j in column] for i in column]
            assert len(r.content) > QUEUED_MAX_BYTES
            assert await on_a(records) == read_before + 2
            assert await on_a("calcstream_api_forwarded_total{api=", 'outcome="failed"') == 0

            # B frozen (for less than the reply group's 2 s session): a socket on A that
            # watches B's id goes on with its other messages while B does not answer (for up
            # to reply_lookup_s, 60 s here) ...
            async with connect(socket_url, additional_headers={
                    "authorization": f"Bearer {token}"}) as ws:
                b.pause()
                try:
                    await ws.send(orjson.dumps({"type": "subscribe", "ids": [done[3]]}).decode())
                    assert orjson.loads(await ws.recv())["type"] == "subscribed"
                    await ws.send(orjson.dumps({"type": "submit", "request": {
                        "op": "sum", "data": [50, 1]}}).decode())
                    assert orjson.loads(await ws.recv())["type"] == "accepted"
                    message = orjson.loads(await asyncio.wait_for(ws.recv(), 30))
                    assert message["type"] == "result" and message["result"] == 51, message
                finally:
                    b.resume()
                message = orjson.loads(await asyncio.wait_for(ws.recv(), 30))
            assert message["type"] == "result" and message["id"] == done[3], message
            assert message["result"] == 4

            # ... and a ?wait=1 re-post on A answers within its wait (no result yet anywhere).
            body = {"id": id_on(where, on_b, "frozen"), "op": "sum", "data": [8, 8]}
            worker.pause()
            try:
                r = await http.post(f"{a.base_url}/v1/calculations", json=body)
                assert r.status_code == 202, r.text
                b.pause()
                try:
                    r = await http.post(f"{a.base_url}/v1/calculations?wait=1", json=body,
                                        timeout=30)
                finally:
                    b.resume()
            finally:
                worker.resume()
            assert r.status_code == 202 and r.json()["status"] == "queued", r.text


def _metric(metrics: str, prefix: str, label: str) -> float:
    """The value of the one sample that starts with ``prefix`` and has ``label``."""
    for line in metrics.splitlines():
        if line.startswith(prefix) and label in line:
            return float(line.rpartition(" ")[2])
    raise AssertionError(f"no {prefix}...{label} sample")


async def obtain(http: httpx.AsyncClient, base: str, body: dict[str, object],
                 wait: float, retries: list[str]) -> dict[str, object]:
    """What a careful client does: submit with ?wait=, and if the answer is not the result
    (202, or the replica went away mid-wait), poll ``GET`` through the balancer for it."""
    try:
        r = await http.post(f"{base}/v1/calculations?wait={wait}", json=body)
        if r.status_code == 200:
            return dict(r.json())
        retries.append(f"{body['id']}: {r.status_code}")
    except httpx.HTTPError as exc:
        retries.append(f"{body['id']}: {type(exc).__name__}")
    result: dict[str, object] = {}

    async def fetched() -> bool:
        try:
            r = await http.get(f"{base}/v1/calculations/{body['id']}")
        except httpx.HTTPError:
            return False
        if r.status_code == 200 and r.json()["status"] == "ok":
            result.update(r.json())
            return True
        return False
    await eventually(fetched, 60, f"the result of {body['id']}")
    return result


def bodies(prefix: str, count: int) -> list[dict[str, object]]:
    """Requests with client ids; the result of each is ``index + 1000``."""
    return [{"id": f"{prefix}-{i}", "op": "sum", "data": [i, 1000]} for i in range(count)]


async def test_replicas_joining_and_leaving_lose_no_waited_result(
        deployment: Deployment) -> None:
    dep = deployment
    async with cluster(dep, 2, spare=1) as (worker, (a, b), ports, nginx):
        await shares_settle([a, b], dep.partitions)
        async with httpx.AsyncClient(timeout=60) as http:
            # Joining: results held back while 24 clients wait through nginx; a third
            # replica joins and takes partitions from the two; then the results come.
            worker.pause()
            base = await requests_published(dep)
            first = bodies(f"join-{uuid.uuid4().hex[:6]}", 24)
            waits = [asyncio.create_task(http.post(f"{nginx.base_url}/v1/calculations?wait=40",
                                                   json=body)) for body in first]
            await eventually(lambda: _at_least(dep, base + len(first)), 30,
                             "every request published")
            c = ApiProcess(dep, "api-2", ports[2])
            try:
                await c.ready()
                await shares_settle([a, b, c], dep.partitions)
                worker.resume()
                answers = await asyncio.gather(*waits)
                # Every waiter got its result from the replica it waited on, though the
                # partition its result went to moved away from it meanwhile.
                assert [r.status_code for r in answers] == [200] * len(first)
                assert [r.json()["result"] for r in answers] == [i + 1000 for i in range(24)]

                # Leaving: 30 clients wait across the three; one replica is stopped (SIGTERM),
                # another killed (SIGKILL), then the results come.
                worker.pause()
                base = await requests_published(dep)
                second = bodies(f"leave-{uuid.uuid4().hex[:6]}", 30)
                retries: list[str] = []
                clients = [asyncio.create_task(obtain(http, nginx.base_url, body, 40, retries))
                           for body in second]
                await eventually(lambda: _at_least(dep, base + len(second)), 30,
                                 "every request published")
                for replica in (b, c):
                    r = await http.get(f"{replica.base_url}/metrics")
                    assert _waiters(r.text) > 0, f"{replica.name} has clients waiting"
                b.proc.send_signal(signal.SIGTERM)
                c.kill()
                worker.resume()
                results = await asyncio.gather(*clients)
                assert [r["result"] for r in results] == [i + 1000 for i in range(30)]
                # uvicorn re-raises SIGTERM once it has shut down gracefully.
                assert await asyncio.to_thread(b.proc.wait, 30) in (0, -15)
                assert "API shut down gracefully" in b.log()
                assert retries, "the crash cut some waits short: they were retried"
                # The survivor took every partition.
                await shares_settle([a], dep.partitions)
            finally:
                c.close()


def _waiters(metrics: str) -> float:
    found = re.search(r"^calcstream_api_result_waiters\{[^}]*\} (\S+)$", metrics, re.M)
    return float(found.group(1)) if found else 0.0


async def _at_least(dep: Deployment, count: int) -> bool:
    return await requests_published(dep) >= count
