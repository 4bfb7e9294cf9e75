"""``python -m bench.tools.socket_w2``: W2 submitted over WebSockets, and what a health check
waits meanwhile.

``--clients`` sockets (16) each submit W2's request (a 300×300 matmul, 2.1 MB of JSON) as a
``submit`` message and wait for its result on the same socket before the next, for
``--seconds``; a ``GET /healthz`` probe runs every 10 ms on its own connection throughout.
Every result is checked (its first values are A's first row). The API runs with W2's
settings (``bench.runner.W2_ENV``, as for the HTTP W2 runs). The clients offer
permessage-deflate, as browsers do (``--no-compress``: they do not). Prints results/s, the
probe's percentiles idle and under the load, the API's CPU per result, and the first wrong
answers, if any.
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
from pathlib import Path

import aiohttp
import orjson

from bench.harness import loadgen, payloads
from bench.harness.loadgen import Probe
from bench.harness.procs import CpuMeter
from bench.harness.stack import CalcstreamStack
from bench.harness.stats import percentiles
from bench.runner import W2_ENV


async def client(url: str, pool: payloads.BodyPool, index: int, stop: asyncio.Event,
                 done: list[float], compress: bool, wrong_seen: list[str]) -> int:
    """Submit and wait, one at a time, until ``stop``; appends each round trip (s) to
    ``done`` and the start of each wrong answer to ``wrong_seen``; returns how many were
    wrong."""
    wrong = 0
    async with aiohttp.ClientSession() as session, \
            session.ws_connect(url, max_msg_size=64 << 20,
                               compress=15 if compress else 0) as ws:
        turn = index
        while not stop.is_set():
            which = turn % len(pool.bodies)
            turn += 1
            started = time.perf_counter()
            await ws.send_str((b'{"type":"submit","request":' + pool.bodies[which]
                               + b"}").decode())
            accepted = orjson.loads((await ws.receive()).data)
            if accepted.get("type") != "accepted":
                wrong += 1
                wrong_seen.append(orjson.dumps(accepted)[:200].decode())
                continue
            message = (await ws.receive()).data
            doc = orjson.loads(message)
            if (doc.get("type") != "result" or doc.get("id") != accepted["id"]
                    or pool.prefix[which] not in message.encode()):
                wrong += 1
                wrong_seen.append(message[:200])
                continue
            done.append(time.perf_counter() - started)
    return wrong


async def main() -> None:
    """One stack, one run."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--no-compress", action="store_true",
                        help="the clients do not offer permessage-deflate (browsers do)")
    args = parser.parse_args()
    pool = payloads.w2_pool()
    with tempfile.TemporaryDirectory(prefix="bench-socket-w2-") as tmp:
        stack = CalcstreamStack(Path(tmp), "socket-w2", env=W2_ENV)
        try:
            await stack.start()
            health = f"{stack.url}/healthz"
            idle = await loadgen.idle_probe(health, 3.0)
            ws_url = stack.url.replace("http://", "ws://") + "/v1/ws"
            stop, done, wrong_seen = asyncio.Event(), list[float](), list[str]()
            probe = Probe(health)
            meter = CpuMeter({"api": stack.api.pid})
            probing = asyncio.create_task(probe.run(stop, args.seconds + 60))
            meter.start()
            started = time.perf_counter()
            clients = [asyncio.create_task(client(ws_url, pool, i, stop, done,
                                                         not args.no_compress, wrong_seen))
                       for i in range(args.clients)]
            await asyncio.sleep(args.seconds)
            stop.set()
            wrong = sum(await asyncio.gather(*clients))
            elapsed = time.perf_counter() - started
            await probing
            per_result = meter.per_item(len(done))
        finally:
            stack.stop()
    load = percentiles(probe.latencies_ms)
    trips = percentiles([t * 1000 for t in done])
    print(f"{args.clients} sockets, {elapsed:.1f} s: {len(done) / elapsed:.1f} results/s "
          f"({len(done)} right, {wrong} wrong), round trip p50 {trips['p50']:.1f} ms "
          f"p99 {trips['p99']:.1f} ms")
    print(f"/healthz p99 idle {idle['p99']:.1f} ms -> under load {load['p99']:.1f} ms "
          f"(p50 {load['p50']:.1f}, max {load['max']:.1f}, failures {probe.failures}); "
          f"API CPU {per_result['api'] / 1000:.1f} ms per result")
    for seen in sorted(set(wrong_seen))[:5]:
        print(f"wrong: {seen}")


if __name__ == "__main__":
    asyncio.run(main())
