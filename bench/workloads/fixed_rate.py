"""W1 at a fixed offered rate: open loop, latency from each request's scheduled start.

A slow server cannot hide its queueing here (no coordinated omission): every request is sent at
its time whether or not the earlier ones were answered (``loadgen.fixed_rate``). A target on a
fresh stack is offered the rate for ``warmup_s`` first; those answers are checked and their
percentiles kept apart (``warmup_latency_ms``), not counted in the figures.
"""

from __future__ import annotations

from typing import Any

from bench.harness import loadgen
from bench.harness.config import Plan
from bench.harness.payloads import BodyPool
from bench.harness.stats import percentiles
from bench.harness.targets import HttpTarget


async def run(target: HttpTarget, pool: BodyPool, plan: Plan,
              warmup_s: float = 0.0) -> dict[str, Any]:
    """Open-loop at ``plan.fixed_rate`` req/s; latency percentiles from scheduled start."""
    check = loadgen.result_check(pool) if target.returns_result else None
    warm = {}
    if warmup_s > 0:
        w = await loadgen.fixed_rate(target.url, pool, plan.fixed_rate, warmup_s,
                                     target.status, check)
        warm = {"warmup_s": warmup_s, "warmup_latency_ms": percentiles(w.latencies_ms),
                "warmup_not_right": w.wrong + w.failed}
    r = await loadgen.fixed_rate(target.url, pool, plan.fixed_rate, plan.fixed_seconds,
                                 target.status, check)
    return {**warm, "offered": r.offered, "answered": len(r.latencies_ms), "wrong": r.wrong,
            "statuses": {str(k): v for k, v in r.statuses.items()},
            "failed": r.failed, "seconds": r.seconds, "latency_ms": percentiles(r.latencies_ms),
            "latencies_ms": sorted(round(x, 3) for x in r.latencies_ms)}
