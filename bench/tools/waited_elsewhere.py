"""``python -m bench.tools.waited_elsewhere``: what a wait costs when its id's result goes to
a partition another replica owns.

Two API replicas, each advertising its URL, share a reply topic of 12 partitions that already
holds ``--fill`` results (an outside producer's requests, computed by one worker, within the
recovery window). Then, one at a time, ``--trials`` waits of each kind on replica A:

- *new, elsewhere* / *new, own share*: a submit with ``?wait=30`` and a client id whose
  partition B owns (A has to borrow it), and one on A's own share; *over a WebSocket*: a
  ``submit`` message with such an id on A's socket (timed until the result arrives);
- *re-post, elsewhere*: a client id on B's partition submitted to A (202), then re-posted to A
  with ``?wait=30`` (timed); *computed elsewhere*: re-posted once B has its result;
- *watch, elsewhere*: a submit to B (202) of an id on B's share, then a WebSocket on A (open
  already) subscribes to it (timed until the result arrives); *computed elsewhere*: a submit
  to B answered there (``?wait=``) first.

For each, the round trip and the reply-topic records A read meanwhile
(``calcstream_api_result_records_total``); before the next, A's borrowed partitions must be
back to none. Prints the kinds side by side.
"""

from __future__ import annotations

import argparse
import asyncio
import re
import statistics
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
import orjson
from aiokafka import AIOKafkaProducer

from bench.harness.procs import HOST, Child
from bench.harness.stack import CalcstreamStack, entry_point
from bench.tools.reply_routing import (
    JSON_HEADERS,
    PARTITIONS,
    end_offsets,
    metric,
    ready,
    shared,
)
from core.net import free_port
from producer_api.routing import ReplyRoutes
from schemas.topics import REQUESTS, RESULTS

_OWNED = re.compile(r"reply partitions owned \[([0-9, ]*)\]")


def owned(child: Child) -> set[int]:
    """The share a replica last logged."""
    assert child.log_path is not None
    found = _OWNED.findall(child.log_path.read_text(errors="replace"))
    return {int(p) for p in found[-1].split(",") if p.strip()} if found else set()


async def fill(bootstrap: str, count: int) -> None:
    """``count`` requests keyed by id straight to the request topic; returns once all their
    results are on the reply topic."""
    before = await end_offsets(bootstrap, RESULTS)
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=5, acks=1)
    await producer.start()
    try:
        prefix = uuid.uuid4().hex[:8]
        acks = []
        for i in range(count):
            rid = f"fill-{prefix}-{i}"
            acks.append(await producer.send(
                REQUESTS, f'{{"id":"{rid}","op":"sum","data":[{i % 97},1]}}'.encode(),
                key=rid.encode()))
        await asyncio.gather(*acks)
    finally:
        await producer.stop()
    deadline = time.monotonic() + 600
    while await end_offsets(bootstrap, RESULTS) - before < count:
        if time.monotonic() > deadline:
            raise TimeoutError(f"{count} results not computed in 600 s")
        await asyncio.sleep(0.5)


async def quiet(session: aiohttp.ClientSession, url: str, limit_s: float = 120.0) -> None:
    """Wait until the replica reads no more records and borrows no partition."""
    deadline = time.monotonic() + limit_s
    last = -1.0
    while time.monotonic() < deadline:
        read = await metric(session, url, "calcstream_api_result_records_total")
        borrowed = await metric(session, url, "calcstream_api_reply_partitions",
                                'role="borrowed"')
        if read == last and borrowed == 0:
            return
        last = read
        await asyncio.sleep(0.3)
    raise TimeoutError(f"{url} still reading after {limit_s} s")


Timed = Callable[[aiohttp.ClientSession, aiohttp.ClientWebSocketResponse, dict[str, str], str],
                Awaitable[tuple[float, dict[str, Any]]]]


async def _waited(session: aiohttp.ClientSession, url: str, body: str) -> dict[str, Any]:
    async with session.post(f"{url}/v1/calculations?wait=30", headers=JSON_HEADERS,
                            data=body) as r:
        doc: dict[str, Any] = await r.json()
        assert r.status == 200, doc
        return doc


async def _queued(session: aiohttp.ClientSession, url: str, body: str) -> None:
    async with session.post(f"{url}/v1/calculations", headers=JSON_HEADERS, data=body) as r:
        assert r.status in (200, 202), await r.text()


async def new_wait(session: aiohttp.ClientSession, ws: aiohttp.ClientWebSocketResponse,
                   urls: dict[str, str], body: str) -> tuple[float, dict[str, Any]]:
    """A submit to A with ?wait=."""
    t0 = time.perf_counter()
    doc = await _waited(session, urls["a"], body)
    return (time.perf_counter() - t0) * 1000, doc


async def repost(session: aiohttp.ClientSession, ws: aiohttp.ClientWebSocketResponse,
                 urls: dict[str, str], body: str) -> tuple[float, dict[str, Any]]:
    """A submit to A, then its re-post to A with ?wait= (timed)."""
    await _queued(session, urls["a"], body)
    t0 = time.perf_counter()
    doc = await _waited(session, urls["a"], body)
    return (time.perf_counter() - t0) * 1000, doc


async def watch(session: aiohttp.ClientSession, ws: aiohttp.ClientWebSocketResponse,
                urls: dict[str, str], body: str) -> tuple[float, dict[str, Any]]:
    """A submit to B, then a subscription on A's socket (timed until the result)."""
    await _queued(session, urls["b"], body)  # 200 when it is a re-submit (watch_done)
    rid = orjson.loads(body)["id"]
    t0 = time.perf_counter()
    await ws.send_str(orjson.dumps({"type": "subscribe", "ids": [rid]}).decode())
    while True:
        message = orjson.loads(await asyncio.wait_for(ws.receive_str(), 30))
        if message["type"] == "result" and message["id"] == rid:
            return (time.perf_counter() - t0) * 1000, message
        assert message["type"] == "subscribed", message


async def repost_done(session: aiohttp.ClientSession, ws: aiohttp.ClientWebSocketResponse,
                      urls: dict[str, str], body: str) -> tuple[float, dict[str, Any]]:
    """A submit to A, computed (B, which owns its partition, has the result), then its re-post
    to A with ?wait= (timed)."""
    await _queued(session, urls["a"], body)
    rid = orjson.loads(body)["id"]
    deadline = time.monotonic() + 30
    while True:  # asked of B alone: a forwarded GET is answered where it lands
        async with session.get(f"{urls['b']}/v1/calculations/{rid}",
                               headers={"x-calcstream-forwarded": "bench"}) as r:
            if r.status == 200 and (await r.json())["status"] == "ok":
                break
        assert time.monotonic() < deadline, f"{rid} not computed in 30 s"
        await asyncio.sleep(0.01)
    return await repost(session, ws, urls, body)


async def watch_done(session: aiohttp.ClientSession, ws: aiohttp.ClientWebSocketResponse,
                     urls: dict[str, str], body: str) -> tuple[float, dict[str, Any]]:
    """A submit to B answered there (?wait=), then a subscription on A's socket (timed)."""
    await _waited(session, urls["b"], body)
    return await watch(session, ws, urls, body)


async def socket_submit(session: aiohttp.ClientSession, ws: aiohttp.ClientWebSocketResponse,
                        urls: dict[str, str], body: str) -> tuple[float, dict[str, Any]]:
    """A submit message on A's socket (timed until the result)."""
    rid = orjson.loads(body)["id"]
    t0 = time.perf_counter()
    await ws.send_str(f'{{"type":"submit","request":{body}}}')
    while True:
        message = orjson.loads(await asyncio.wait_for(ws.receive_str(), 30))
        if message["type"] == "result" and message["id"] == rid:
            return (time.perf_counter() - t0) * 1000, message
        assert message["type"] == "accepted", message


KINDS: dict[str, tuple[str, Timed]] = {
    "new, elsewhere": ("b", new_wait),
    "new, own share": ("a", new_wait),
    "new over a WebSocket, elsewhere": ("b", socket_submit),
    "re-post, elsewhere": ("b", repost),
    "re-post, computed elsewhere": ("b", repost_done),
    "watch, elsewhere": ("b", watch),
    "watch, computed elsewhere": ("b", watch_done),
}
"""Each kind of wait: whose share its id is on, and what is timed."""


async def main() -> None:
    """Start the stack and two replicas, fill the reply topic, time the trials."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--fill", type=int, default=120_000,
                        help="results on the reply topic before the trials")
    parser.add_argument("--trials", type=int, default=10, help="submits of each kind")
    args = parser.parse_args()
    where = ReplyRoutes(range(PARTITIONS))
    with tempfile.TemporaryDirectory(prefix="bench-elsewhere-") as tmp:
        stack = CalcstreamStack(Path(tmp), "elsewhere", with_api=False, partitions=PARTITIONS)
        children: list[Child] = []
        try:
            await stack.start()
            ports = [free_port() for _ in range(2)]
            children = [Child(f"api-{i}", [*entry_point("producer_api"), "--host", HOST,
                                           "--port", str(p)],
                              stack.env(CALCSTREAM_LOG_LEVEL="INFO",
                                        CALCSTREAM_ADVERTISED_URL=f"http://{HOST}:{p}"),
                              Path(tmp)).start()
                        for i, p in enumerate(ports)]
            a_url, b_url = (f"http://{HOST}:{p}" for p in ports)
            async with aiohttp.ClientSession() as session:
                for url in (a_url, b_url):
                    await ready(session, url)
                await shared(session, [a_url, b_url])
                started = time.monotonic()
                await fill(stack.bootstrap, args.fill)
                print(f"{args.fill} results on the reply topic in "
                      f"{time.monotonic() - started:.1f} s", flush=True)
                await quiet(session, a_url)
                shares = {"b": owned(children[1]), "a": owned(children[0])}
                print(f"A owns {sorted(shares['a'])}, B {sorted(shares['b'])}")
                rows: dict[str, list[tuple[float, float]]] = {kind: [] for kind in KINDS}
                urls = {"a": a_url, "b": b_url}
                async with session.ws_connect(a_url.replace("http", "ws") + "/v1/ws",
                                              autoping=True) as ws:
                    for trial in range(args.trials):
                        for kind, (share, timed) in KINDS.items():
                            rid = next(i for i in (f"{kind[:3]}-{uuid.uuid4().hex[:8]}"
                                                   for _ in range(10_000))
                                       if where.partition_of(i) in shares[share])
                            read_before = await metric(session, a_url,
                                                       "calcstream_api_result_records_total")
                            body = f'{{"id":"{rid}","op":"sum","data":[{trial},1]}}'
                            took, doc = await timed(session, ws, urls, body)
                            assert doc["result"] == trial + 1, doc
                            read_after = await metric(session, a_url,
                                                      "calcstream_api_result_records_total")
                            rows[kind].append((took, read_after - read_before))
                            await quiet(session, a_url)
        finally:
            for child in children:
                child.stop()
            stack.stop()
    print(f"\n{args.fill} results on {PARTITIONS} partitions, 2 replicas, {args.trials} "
          "waits of each kind on A:\n")
    print("| wait | round trip ms, median (min-max) "
          "| records A read, median (min-max) |")
    print("|---|---|---|")
    for kind, got in rows.items():
        ms = [t for t, _ in got]
        counts = [n for _, n in got]
        print(f"| {kind} | {statistics.median(ms):.1f} ({min(ms):.1f}-{max(ms):.1f}) "
              f"| {statistics.median(counts):.0f} ({min(counts):.0f}-{max(counts):.0f}) |")


if __name__ == "__main__":
    asyncio.run(main())
