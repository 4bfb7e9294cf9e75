"""W1 against calcstream, two ways a client can use it.

* ``wait``: ``POST /v1/calculations?wait=30`` answers 200 with the result: one round trip, the
  same shape as the peers (run by ``saturation.saturate``).
* ``stream``: ``POST /v1/calculations`` answers 202 after the broker's ack, and the client sees
  the results on a WebSocket (``subscribe all``). The 64 clients no longer wait for the compute,
  so the pipeline stays full; throughput is results observed per second.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from bench.harness import loadgen, wrk
from bench.harness.config import Plan
from bench.harness.loadgen import Probe
from bench.harness.observer import Observer
from bench.harness.payloads import BodyPool, close
from bench.harness.procs import CpuMeter
from bench.harness.stack import CalcstreamStack
from bench.harness.stats import percentiles


def value_check(pool: BodyPool) -> Any:
    """A result is right when it is ok and equals one of the pool's answers."""
    expected = pool.expected

    def check(doc: dict[str, Any]) -> bool:
        if doc.get("status") != "ok":
            return False
        value = float(doc["result"])
        return any(close(value, e) for e in expected)

    return check


async def warm_up(stack: CalcstreamStack, pool: BodyPool, plan: Plan) -> None:
    """``stream``'s submits for ``plan.warmup_seconds``, not counted, and their results out of
    the way before the observer subscribes (bench/FINDINGS.md 39)."""
    if plan.warmup_seconds > 0:
        await wrk.run(f"{stack.url}/v1/calculations", pool, plan.warmup_seconds,
                      plan.connections, "status", 202)
        await stack.settle()


async def stream(stack: CalcstreamStack, pool: BodyPool, plan: Plan,
                 meter: CpuMeter | None = None) -> dict[str, Any]:
    """wrk submits (202 after ack); one WebSocket observes and checks every result; with
    ``meter``, the CPU each process spent per result observed."""
    health = f"{stack.url}/healthz"
    idle = await loadgen.idle_probe(health, plan.idle_probe_seconds)
    ws_url = stack.url.replace("http://", "ws://") + "/v1/ws"
    async with Observer(ws_url, value_check(pool)) as observer:
        stop = asyncio.Event()
        probe = Probe(health)
        probing = asyncio.create_task(probe.run(stop, plan.w1_seconds + 60))
        t0 = time.perf_counter()
        if meter is not None:
            meter.start()
        try:
            submitted = await wrk.run(f"{stack.url}/v1/calculations", pool, plan.w1_seconds,
                                      plan.connections, "status", 202)
            complete = await observer.wait_for(submitted.ok, quiet_s=5.0, limit_s=60.0)
        finally:
            stop.set()
            await probing
        span = (observer.last or t0) - t0
        cpu = meter.per_item(observer.ok) if meter is not None else None
    return {"cpu_us_per_result": cpu, "submitted": submitted.ok, "submit_per_s": submitted.ok_per_s,
            "submit_latency_ms": submitted.latency_ms, "ok": observer.ok,
            "wrong": observer.wrong, "dropped": observer.dropped, "complete": complete,
            "seconds": span, "ok_per_s": observer.ok / span if span > 0 else 0.0,
            "probe_idle_ms": idle, "probe_load_ms": percentiles(probe.latencies_ms),
            "probe_failures": probe.failures,
            "probe_series": [(round(t, 3), round(lat * 1000, 3)) for t, lat in probe.samples]}
