"""The calcstream stack as ``make run`` starts it: embedded Kafka, topics, worker(s), API.

Same processes (``python -m consumer``, ``python -m producer_api``) and the product's defaults;
the bench only picks free ports and, where a workload says so, overrides named settings (each
override is listed in the report).
"""

from __future__ import annotations

import asyncio
import atexit
import os
import shutil
import sys
import time
from pathlib import Path
from typing import Any

import aiohttp
from prometheus_client.parser import text_string_to_metric_families

from bench.harness import launch
from bench.harness.procs import HOST, Child, exit_on_sigterm
from core.admin import ensure_topics, wait_for_broker
from core.kafka import EmbeddedKafka
from core.net import free_port
from core.settings import BrokerSettings
from producer_api.settings import ApiSettings

WARMUP_BODY = b'{"op":"sum_of_squares","data":[1.0,2.0]}'
BENCH_ENV = {"CALCSTREAM_CACHE_ENTRIES": "0"}
"""Every bench stack runs without the worker's result cache: the load cycles a few bodies, and
the peers compute every request, so cached answers would measure a different thing."""
EXTRA_ENV: dict[str, str] = {}
"""``--set NAME=VALUE`` from the command line: experiment settings for every stack."""


def api_settings(env: dict[str, str]) -> ApiSettings:
    """The API's settings as a process started with the CALCSTREAM_* of ``env`` has them (for
    the raw peers, which use the API's Kafka client settings)."""
    fields = ApiSettings.model_fields
    given: dict[str, Any] = {name.removeprefix("CALCSTREAM_").lower(): value
                             for name, value in env.items() if name.startswith("CALCSTREAM_")}
    return ApiSettings(**{k: v for k, v in given.items() if k in fields})


def set_experiment(item: str) -> None:
    """Take ``CALCSTREAM_NAME=VALUE`` (a ``--set`` argument) into ``EXTRA_ENV``."""
    name, sep, value = item.partition("=")
    if not sep or not name.startswith("CALCSTREAM_"):
        raise ValueError(f"--set wants CALCSTREAM_NAME=VALUE, got {item!r}")
    EXTRA_ENV[name] = value


class CalcstreamStack:
    """Broker + topics + workers + API on free ports; ``await start()``, ``stop()``."""

    def __init__(self, log_dir: Path, name: str = "calcstream", workers: int = 1,
                 with_api: bool = True, env: dict[str, str] | None = None,
                 partitions: int = 4) -> None:
        self.log_dir = log_dir
        self.name = name
        self.workers = workers
        self.with_api = with_api
        self.overrides = dict(env or {})
        self.partitions = partitions
        # Its data (and its own log, logs/server.log) beside the other processes' logs.
        self.broker = EmbeddedKafka(free_port(), data_dir=log_dir / f"{name}-kafka")
        atexit.register(self.broker.kill)
        exit_on_sigterm()
        self.api_port = free_port()
        self.metrics_ports = [free_port() for _ in range(workers)]
        self.children: list[Child] = []

    @property
    def bootstrap(self) -> str:
        """The broker's address."""
        return self.broker.bootstrap_servers

    @property
    def url(self) -> str:
        """The API's base URL."""
        return f"http://{HOST}:{self.api_port}"

    def env(self, **extra: str) -> dict[str, str]:
        """CALCSTREAM_* for a child of this stack."""
        return {"CALCSTREAM_BOOTSTRAP_SERVERS": self.bootstrap,
                "CALCSTREAM_TOPIC_PARTITIONS": str(self.partitions),
                "CALCSTREAM_LOG_LEVEL": "WARNING", **BENCH_ENV, **self.overrides,
                **EXTRA_ENV, **extra}

    @property
    def api(self) -> Child:
        """The API process."""
        return next(c for c in self.children if c.name.endswith("-api"))

    def pids(self) -> dict[str, int]:
        """Process ids by role (broker, api, worker; workers numbered when more than one)."""
        pids = {"broker": self.broker.pid} if self.broker.pid else {}
        workers = [c for c in self.children if not c.name.endswith("-api")]
        for i, child in enumerate(workers):
            pids["worker" if len(workers) == 1 else f"worker{i}"] = child.pid
        if self.with_api:
            pids["api"] = self.api.pid
        return pids

    async def start(self, timeout: float = 90.0) -> None:
        """Start everything and return once a request makes the full round trip."""
        self.broker.start()
        settings = BrokerSettings(bootstrap_servers=self.bootstrap,
                                  topic_partitions=self.partitions)
        await wait_for_broker(self.bootstrap)
        await ensure_topics(settings)
        for i, port in enumerate(self.metrics_ports):
            self.children.append(Child(
                f"{self.name}-worker-{i + 1}", entry_point("consumer"),
                self.env(CALCSTREAM_METRICS_PORT=str(port)), self.log_dir).start())
        if self.with_api:
            api = Child(f"{self.name}-api", [*entry_point("producer_api"), "--host", HOST,
                                             "--port", str(self.api_port)],
                        self.env(), self.log_dir).start()
            self.children.append(api)
            await asyncio.to_thread(api.wait_port, self.api_port, timeout)
            await self.round_trip(timeout)
        for port, child in zip(self.metrics_ports, self.children, strict=False):
            await asyncio.to_thread(child.wait_port, port, timeout)

    async def round_trip(self, timeout: float) -> None:
        """Wait until a submit with ``?wait=`` comes back with its result."""
        deadline = time.monotonic() + timeout
        async with aiohttp.ClientSession() as session:
            while time.monotonic() < deadline:
                try:
                    async with session.post(f"{self.url}/v1/calculations?wait=5",
                                            data=WARMUP_BODY,
                                            headers={"Content-Type": "application/json"}) as r:
                        if r.status == 200:
                            return
                except aiohttp.ClientError:
                    pass
                await asyncio.sleep(0.2)
        raise TimeoutError(f"the stack did not answer a request in {timeout}s")

    async def settle(self, quiet_s: float = 2.0, limit_s: float = 90.0) -> None:
        """Wait until the workers have handled nothing new for ``quiet_s`` (bounded), so work
        a measurement left queued (publishes the producer still retries after a 503, say)
        does not load the next one."""
        deadline = time.monotonic() + limit_s
        last, still_since = -1.0, time.monotonic()
        while time.monotonic() < deadline:
            counts = [await worker_metrics(p) for p in self.metrics_ports]
            now = sum(float(c.get("calcstream_worker_records_total", 0)) for c in counts)
            if now != last:
                last, still_since = now, time.monotonic()
            elif time.monotonic() - still_since >= quiet_s:
                return
            await asyncio.sleep(0.25)

    def stop(self) -> None:
        """SIGTERM the API and workers (they drain), then stop the broker; safe twice."""
        for child in reversed(self.children):
            child.stop()
        self.children.clear()
        self.broker.stop()
        atexit.unregister(self.broker.kill)
        # The records are never read again. Left on disk, a W2 stack's gigabytes were written
        # back while later stacks were measured, and each round ran slower than the one before
        # (bench/FINDINGS.md, finding 19). Deleted now, their dirty pages are dropped unwritten;
        # the broker's own logs stay beside the others.
        shutil.rmtree(self.broker.data_dir / "log", ignore_errors=True)


def entry_point(module: str) -> list[str]:
    """``python -m module``, through ``bench.harness.launch`` when producer overrides are
    set."""
    if os.environ.get(launch.ENV):
        return [sys.executable, "-m", "bench.harness.launch", module]
    return [sys.executable, "-m", module]


async def worker_metrics(port: int) -> dict[str, Any]:
    """A worker's Prometheus samples: name → value, histograms as name → [(le, count)]."""
    return await metrics_at(f"http://{HOST}:{port}/metrics")


async def metrics_at(url: str) -> dict[str, Any]:
    """Prometheus samples at ``url``: name → value, histograms as name → [(le, count)]."""
    async with aiohttp.ClientSession() as session, session.get(url) as resp:
        text = await resp.text()
    out: dict[str, Any] = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            if s.name.endswith("_bucket"):
                out.setdefault(s.name, []).append((float(s.labels["le"]), s.value))
            elif "status" in s.labels:
                out[f"{s.name}:{s.labels['status']}"] = s.value
            elif "partition" not in s.labels:
                out[s.name] = s.value
    return out
