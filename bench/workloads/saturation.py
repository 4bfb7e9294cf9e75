"""Closed-loop load against one target: 64 clients back to back (wrk), with a /healthz probe.

W1 (sum_of_squares over 1,000 floats) and W2 (300×300 matmul) against every peer and
calcstream's ``?wait=30``; also the load generator's ceiling (wrk and aiohttp against the null
peer) and Celery without HTTP (``delay()`` + ``get()`` in a process of its own).
"""

from __future__ import annotations

import asyncio
import sys
import time
from typing import Any

import aiohttp
import orjson

from bench.harness import loadgen, wrk
from bench.harness.config import Plan
from bench.harness.loadgen import Probe
from bench.harness.payloads import BodyPool
from bench.harness.procs import ROOT, CpuMeter
from bench.harness.stats import percentiles
from bench.harness.targets import HttpTarget


async def saturate(target: HttpTarget, pool: BodyPool, plan: Plan, seconds: float,
                   mode: str | None = None, probe_health: bool = True,
                   meter: CpuMeter | None = None) -> dict[str, Any]:
    """wrk with ``plan.connections`` clients, every answer checked, the probe running (unless
    ``probe_health`` is off: W2 reports no probe figures); with ``meter``, the CPU each
    process spent per right answer while wrk ran."""
    mode = mode or _mode(target)
    idle = (await loadgen.idle_probe(target.health, plan.idle_probe_seconds)
            if probe_health else None)
    stop = asyncio.Event()
    probe = Probe(target.health) if probe_health else None
    probing = asyncio.create_task(probe.run(stop, seconds + 30)) if probe else None
    try:
        if meter is not None:
            meter.start()
        result = await wrk.run(target.url + pool.query, pool, seconds, plan.connections, mode,
                               target.status)
    finally:
        stop.set()
        if probing is not None:
            await probing
    figure = {**result.as_dict(),
              "cpu_us_per_result": meter.per_item(result.ok) if meter is not None else None}
    if probe is not None:
        figure.update(probe_idle_ms=idle, probe_load_ms=percentiles(probe.latencies_ms),
                      probe_failures=probe.failures,
                      probe_series=[(round(t, 3), round(lat * 1000, 3))
                                    for t, lat in probe.samples])
    return figure


async def warm_up(target: HttpTarget, pool: BodyPool, plan: Plan) -> None:
    """``saturate``'s load for ``plan.warmup_seconds``, not counted: a fresh stack's broker
    compiles its hot paths in its first seconds (bench/FINDINGS.md 39)."""
    if plan.warmup_seconds > 0:
        await wrk.run(target.url + pool.query, pool, plan.warmup_seconds, plan.connections,
                      _mode(target), target.status)


def _mode(target: HttpTarget) -> str:
    """What check.lua checks of each answer: its number when the target returns the result."""
    return "number" if target.returns_result else "status"


async def background_rates(target: HttpTarget, pool: BodyPool, plan: Plan,
                           seconds: float, probe_health: bool = True) -> dict[str, Any]:
    """The background peer: accepted/s from wrk, completed/s from its own counters (waits,
    bounded, for the backlog to finish so it does not load the next measurement)."""
    base = target.url.rsplit("/", 1)[0]
    async with aiohttp.ClientSession() as session:
        await (await session.post(f"{base}/stats/reset")).read()
        started = time.time()
        run = await saturate(target, pool, plan, seconds, probe_health=probe_health)
        deadline = time.monotonic() + 180
        while True:
            async with session.get(f"{base}/stats") as resp:
                stats = orjson.loads(await resp.read())
            if stats["completed"] >= stats["accepted"] or time.monotonic() > deadline:
                break
            await asyncio.sleep(0.2)
    span = (stats["last_complete"] or started) - (stats["first_accept"] or started)
    run["completed"] = stats["completed"]
    run["accepted"] = stats["accepted"]
    run["completed_per_s"] = stats["completed"] / span if span > 0 else 0.0
    return run


async def ceiling(null: HttpTarget, pool: BodyPool, plan: Plan) -> dict[str, Any]:
    """What the load generators reach against an endpoint that only reads the body and
    answers 202 (itself a one-process FastAPI app, so this bounds the generator from below)."""
    out: dict[str, Any] = {}
    for threads in (1, 2):
        r = await wrk.run(null.url, pool, plan.ceiling_seconds, plan.connections, "status",
                          202, threads)
        out[f"wrk_t{threads}_per_s"] = r.ok_per_s
    done, elapsed = await loadgen.closed_loop(null.url, pool, plan.ceiling_seconds,
                                              plan.connections, 202)
    out["aiohttp_per_s"] = done / elapsed
    return out


async def celery_direct(redis_url: str, tasks: int) -> dict[str, Any]:
    """``delay()`` + ``get()`` without HTTP, in its own process."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bench.peers.celery_direct", str(tasks), cwd=ROOT,
        env={"BENCH_REDIS_URL": redis_url, "PYTHONPATH": str(ROOT), "PATH": ""},
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
    out, _ = await asyncio.wait_for(proc.communicate(), 300)
    last = out.decode().strip().splitlines()[-1]
    doc: dict[str, Any] = orjson.loads(last)
    return doc
