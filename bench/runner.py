"""Runs the selected workloads against every target and returns the raw figures per run.

Targets are interleaved within each round (inline, to_thread, ..., calcstream, then again), so
drift in what else the machine is doing spreads over all of them instead of biasing one.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import platform
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from functools import partial
from pathlib import Path
from typing import Any

from bench.harness import payloads, profile
from bench.harness.config import Plan
from bench.harness.procs import CpuMeter, redis_server
from bench.harness.stack import CalcstreamStack, worker_metrics
from bench.harness.stats import bucket_delta, histogram_quantile
from bench.harness.targets import PeerSet, calcstream_target
from bench.workloads import (
    api_memory,
    bulk,
    echo_rate,
    fixed_rate,
    result_cache,
    saturation,
    w1_stream,
    worker_path,
)

logger = logging.getLogger(__name__)

WORKLOADS = ("ceiling", "w1", "fixed", "bulk", "worker", "w2", "memory", "cache", "guarantee")
GUARANTEES = ("at_least_once", "exactly_once")
NEEDS_WRK = {"ceiling", "w1", "w2"}
BULK_ENV = {"CALCSTREAM_WS_QUEUE_SIZE": "1000000",
            "CALCSTREAM_RESULT_STORE_MAX": "1000000",
            "CALCSTREAM_RESULT_STORE_MAX_BYTES": str(2 * 1024**3)}
"""Settings the bulk stack overrides: its observer may lag, and 200,000 ids must be kept."""
W2_ENV = {"CALCSTREAM_MAX_ARRAY_LENGTH": "200000"}
"""A 300×300 matmul request carries 180,000 values; the default limit is 100,000."""
QUICK_ENV = {**BULK_ENV, **W2_ENV, **api_memory.ENV, "CALCSTREAM_SESSION_TIMEOUT_MS": "2000",
             "CALCSTREAM_HEARTBEAT_INTERVAL_MS": "500"}
"""--quick runs every workload on one stack with every override (and fast group joins)."""

Results = dict[str, Any]


def _say(message: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", flush=True)


def _runs(results: Results, workload: str, target: str) -> list[dict[str, Any]]:
    runs: list[dict[str, Any]] = results.setdefault(workload, {}).setdefault(target, [])
    return runs


async def _record(results: Results, workload: str, target: str,
                  job: Callable[[], Awaitable[dict[str, Any]]]) -> None:
    """Run one measurement; a failure is recorded, not fatal to the rest of the bench."""
    started = time.perf_counter()
    try:
        figure = await job()
    except Exception as exc:  # noqa: BLE001 - one broken target must not stop the others
        logger.exception("%s/%s failed", workload, target)
        figure = {"error": f"{type(exc).__name__}: {exc}"}
    figure["wall_seconds"] = time.perf_counter() - started
    _runs(results, workload, target).append(figure)
    brief = {k: round(v, 1) for k, v in figure.items()
             if isinstance(v, float) and k.endswith(("per_s", "_mb"))}
    _say(f"{workload:8} {target:18} {brief or figure.get('error', '')}")


class Profiler:
    """With ``--profile``, py-spy the stack's API and worker while a measurement runs."""

    def __init__(self, plan: Plan, out: Path) -> None:
        self.enabled = plan.profile
        self.out = out

    async def around(self, stack: CalcstreamStack, tag: str, seconds: float,
                     job: Callable[[], Awaitable[dict[str, Any]]]) -> dict[str, Any]:
        """Run ``job``; sample from 1.5 s in for ``seconds``; add the hottest frames."""
        if not self.enabled or not stack.children:
            return await job()
        pids = {"api": stack.api.pid} if stack.with_api else {}
        pids["worker"] = stack.children[0].pid

        async def sample() -> dict[str, Path]:
            await asyncio.sleep(1.5)
            return await profile.record(pids, seconds, self.out / "profiles", tag)

        sampling = asyncio.create_task(sample())
        figure = await job()
        paths = await sampling
        figure["profile"] = {name: {"file": f"profiles/{path.name}",
                                    "hottest": profile.hottest(path)}
                             for name, path in paths.items()}
        return figure


async def run(plan: Plan, only: tuple[str, ...], log_dir: Path, out: Path) -> Results:
    """Every selected workload; the raw per-run figures, keyed workload → target → runs."""
    selected = [w for w in WORKLOADS if w in only]
    results: Results = {"plan": plan.__dict__, "selected": selected,
                        "started": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
                        "python": platform.python_version()}
    w1_pool = payloads.w1_pool()
    profiler = Profiler(plan, out)
    peers = PeerSet(log_dir)
    if {"ceiling", "w1", "fixed", "w2"} & set(selected):
        _say("starting the peers")
        await peers.start()
    try:
        if "ceiling" in selected:
            for _ in range(plan.runs):
                await _record(results, "ceiling", "null",
                              lambda: saturation.ceiling(peers.targets["null"], w1_pool, plan))
        stacks = Stacks(plan, log_dir)
        try:
            if {"w1", "fixed"} & set(selected):
                await _w1_and_fixed(results, selected, plan, peers, stacks, w1_pool, profiler)
            if "bulk" in selected:
                await _bulk(results, plan, stacks, profiler)
            if "worker" in selected:
                await _worker_path(results, plan, stacks, profiler)
            if "w2" in selected:
                await _w2(results, plan, peers, stacks, profiler)
            if "memory" in selected:
                await _memory(results, plan, stacks)
            if "cache" in selected:
                await _cache(results, plan)
            if "guarantee" in selected:
                await _guarantees(results, plan, w1_pool, log_dir)
        finally:
            stacks.close()
    finally:
        peers.stop()
    results["finished"] = time.strftime("%Y-%m-%d %H:%M:%S %Z")
    return results


class Stacks:
    """calcstream stacks: a fresh one per use in a full run (each measurement starts from an
    empty broker, as it did on Tansu, whose cost per record grew with what it held), one shared
    stack with every override in a quick run."""

    def __init__(self, plan: Plan, log_dir: Path) -> None:
        self.plan = plan
        self.log_dir = log_dir
        self._shared: CalcstreamStack | None = None

    @contextlib.asynccontextmanager
    async def get(self, name: str, env: dict[str, str] | None = None, workers: int = 1,
                  with_api: bool = True) -> AsyncIterator[CalcstreamStack]:
        """A started stack for one measurement."""
        if self.plan.quick:
            if self._shared is None:
                self._shared = CalcstreamStack(self.log_dir, "quick", env=QUICK_ENV)
                await self._shared.start()
            yield self._shared
            return
        stack = CalcstreamStack(self.log_dir, name, workers=workers, with_api=with_api,
                                env=env)
        try:
            await stack.start()
            yield stack
        finally:
            stack.stop()

    def close(self) -> None:
        """Stop the shared stack, if any."""
        if self._shared is not None:
            self._shared.stop()
            self._shared = None


def _meter(stack: CalcstreamStack) -> CpuMeter:
    """CPU of the stack's processes, wrk and the bench process (the /healthz probe and, when
    streaming, the WebSocket observer)."""
    return CpuMeter({**stack.pids(), "bench": os.getpid()}, reaped_children=True)


async def _w1_and_fixed(results: Results, selected: list[str], plan: Plan, peers: PeerSet,
                        stacks: Stacks, pool: payloads.BodyPool, profiler: Profiler) -> None:
    """Every calcstream measurement on a fresh stack, so that none starts on a broker the
    previous ones filled (Tansu slowed as it filled, FINDINGS 0)."""
    sample_s = max(1.0, plan.w1_seconds - 2)
    for round_ in range(plan.runs):
        if "w1" not in selected:
            break
        for name in plan.peers:
            target = peers.targets[name]
            if name == "background":
                await _record(results, "w1", name, partial(
                    saturation.background_rates, target, pool, plan, plan.w1_seconds))
            else:
                await _record(results, "w1", name,
                              partial(saturation.saturate, target, pool, plan, plan.w1_seconds))
            if name == "celery":
                await peers.settle_celery()
        async with stacks.get(f"w1-wait-{round_}") as stack:
            await saturation.warm_up(calcstream_target(stack), pool, plan)
            await _record(results, "w1", "calcstream", partial(
                profiler.around, stack, f"w1-wait-{round_}", sample_s,
                partial(saturation.saturate, calcstream_target(stack), pool, plan, plan.w1_seconds,
                        meter=_meter(stack))))
            await stack.settle()
        async with stacks.get(f"w1-stream-{round_}") as stack:
            await w1_stream.warm_up(stack, pool, plan)
            await _record(results, "w1", "calcstream_stream", partial(
                profiler.around, stack, f"w1-stream-{round_}", sample_s,
                partial(w1_stream.stream, stack, pool, plan, _meter(stack))))
            await stack.settle()
        assert peers.redis_url is not None
        await _record(results, "w1", "celery_direct",
                      partial(saturation.celery_direct, peers.redis_url, plan.celery_direct_tasks))
        _say(f"w1 round {round_ + 1}/{plan.runs} done")
    if "fixed" in selected:
        for run_ in range(plan.runs):
            for name in plan.peers:
                await _record(results, "fixed", name,
                              partial(fixed_rate.run, peers.targets[name], pool, plan))
                if name == "celery":
                    await peers.settle_celery()
            async with stacks.get(f"fixed-{run_}") as stack:
                await _record(results, "fixed", "calcstream",
                              partial(fixed_rate.run, calcstream_target(stack), pool, plan,
                                      plan.warmup_seconds))
                # The same two Kafka hops without calcstream, on the same broker, right after.
                await _record(results, "fixed", "raw_echo",
                              partial(echo_rate.run, stack, pool, plan))


async def _bulk(results: Results, plan: Plan, stacks: Stacks, profiler: Profiler) -> None:
    for round_ in range(plan.runs):
        for fmt in ("json", "npy"):
            async with stacks.get(f"bulk-{fmt}-{round_}", BULK_ENV) as stack:
                await _record(results, "bulk", fmt, partial(
                    profiler.around, stack, f"bulk-{fmt}-{round_}", 8.0,
                    partial(bulk.run, stack, plan, fmt)))
                if fmt == "npy":  # its records through aiokafka alone, same broker, right after
                    await _record(results, "bulk", "raw_npy", partial(bulk.raw, stack, plan))


async def _worker_path(results: Results, plan: Plan, stacks: Stacks,
                       profiler: Profiler) -> None:
    for round_ in range(plan.runs):
        async with stacks.get(f"worker-path-{round_}", workers=0, with_api=False) as stack:
            profile_dir = profiler.out / "profiles" if profiler.enabled else None
            await _record(results, "worker", "calcstream", partial(
                worker_path.run, stack, plan.worker_path_records, profile_dir))


async def _w2(results: Results, plan: Plan, peers: PeerSet, stacks: Stacks,
              profiler: Profiler) -> None:
    pool, binary = payloads.w2_pool(), payloads.w2_binary_pool()
    for round_ in range(plan.runs):
        for name in plan.peers:
            target = peers.targets[name]
            if name == "background":
                await _record(results, "w2", name, partial(
                    saturation.background_rates, target, pool, plan, plan.w2_seconds))
                continue
            await _record(results, "w2", name, partial(
                saturation.saturate, target, pool, plan, plan.w2_seconds, "prefix"))
            if name == "celery":
                await peers.settle_celery()
        async with stacks.get(f"w2-{round_}", W2_ENV) as stack:
            # No warm-up here: after 5 s of W2 the measured run went slower, not faster, most
            # likely behind the warm-up's hundreds of megabytes being written back (FINDINGS 39).
            await _record(results, "w2", "calcstream", partial(
                profiler.around, stack, f"w2-{round_}", max(1.0, plan.w2_seconds - 2),
                partial(_w2_calcstream, stack, pool, plan)))
            # calcstream's own contract, beside the peers' recipe: labelled as such. The
            # requests wrk left in flight are computed first.
            await stack.settle()
            await _record(results, "w2", "calcstream_binary", partial(
                _w2_calcstream, stack, binary, plan))


async def _w2_calcstream(stack: CalcstreamStack, pool: payloads.BodyPool,
                         plan: Plan) -> dict[str, Any]:
    port = stack.metrics_ports[0]
    key = "calcstream_worker_event_loop_lag_seconds_bucket"
    before = (await worker_metrics(port)).get(key)
    figure = await saturation.saturate(calcstream_target(stack), pool, plan, plan.w2_seconds,
                                       "prefix", meter=_meter(stack))
    lag = bucket_delta((await worker_metrics(port))[key], before)
    figure["worker_loop_lag_p99_ms_at_most"] = histogram_quantile(lag, 0.99) * 1000
    figure["worker_loop_lag_buckets"] = lag
    return figure


async def _guarantees(results: Results, plan: Plan, pool: payloads.BodyPool,
                      log_dir: Path) -> None:
    """The worker path, W1 bulk JSON and W1 at the fixed rate under each processing guarantee,
    alternating, each on a fresh stack (also in a quick run: the guarantee is the stack's)."""
    for round_ in range(plan.guarantee_runs):
        for guarantee in GUARANTEES:
            env = {"CALCSTREAM_PROCESSING_GUARANTEE": guarantee}
            async with _fresh(plan, log_dir, f"eos-worker-{guarantee}-{round_}", env, workers=0,
                              with_api=False) as stack:
                await _record(results, "guarantee", f"worker_{guarantee}", partial(
                    worker_path.measure, stack.bootstrap, stack.env(), stack.log_dir,
                    plan.worker_path_records))
            async with _fresh(plan, log_dir, f"eos-bulk-{guarantee}-{round_}",
                              {**BULK_ENV, **env}) as stack:
                await _record(results, "guarantee", f"bulk_{guarantee}",
                              partial(bulk.run, stack, plan, "json"))
            async with _fresh(plan, log_dir, f"eos-fixed-{guarantee}-{round_}", env) as stack:
                await _record(results, "guarantee", f"fixed_{guarantee}",
                              partial(fixed_rate.run, calcstream_target(stack), pool, plan,
                                      plan.warmup_seconds))
        _say(f"guarantee round {round_ + 1}/{plan.guarantee_runs} done")


@contextlib.asynccontextmanager
async def _fresh(plan: Plan, log_dir: Path, name: str, env: dict[str, str], workers: int = 1,
                 with_api: bool = True) -> AsyncIterator[CalcstreamStack]:
    stack = CalcstreamStack(log_dir, name, workers=workers, with_api=with_api,
                            env={**(QUICK_ENV if plan.quick else {}), **env})
    try:
        await stack.start()
        yield stack
    finally:
        stack.stop()


async def _memory(results: Results, plan: Plan, stacks: Stacks) -> None:
    async with stacks.get("memory", api_memory.ENV) as stack:
        await _record(results, "memory", "calcstream",
                      lambda: api_memory.run(stack, plan.memory_results))


async def _cache(results: Results, plan: Plan) -> None:
    """The compute step with no cache, a cold and a warm one: in-process LRU, then Redis."""
    server, url = await asyncio.to_thread(redis_server)
    try:
        caches = {"lru": result_cache.lru, "redis": result_cache.redis_at(url)}
        for _ in range(plan.runs):
            for name, fresh in caches.items():
                await _record(results, "cache", name, partial(
                    _cache_figures, fresh, plan.cache_repeat))
    finally:
        server.stop()


async def _cache_figures(fresh: Callable[[], Any], repeat: int) -> dict[str, Any]:
    return {"workloads": await asyncio.to_thread(result_cache.measure, fresh, repeat)}
