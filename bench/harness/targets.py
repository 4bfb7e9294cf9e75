"""Who is benchmarked: the HTTP peers (uvicorn processes), Celery, and the calcstream stack."""

from __future__ import annotations

import asyncio
import logging
import sys
from dataclasses import dataclass
from pathlib import Path

from bench.harness.procs import (
    HOST,
    Child,
    redis_server,
    until_idle,
    until_machine_idle,
    uvicorn_child,
)
from bench.harness.stack import CalcstreamStack
from core.net import free_port

logger = logging.getLogger(__name__)

PEERS = ("inline", "to_thread", "background", "celery")
"""The usual recipes, in the order the report lists them."""


@dataclass(frozen=True)
class HttpTarget:
    """One endpoint under load: where to POST, what a right answer looks like."""

    name: str
    url: str
    health: str
    status: int = 200
    returns_result: bool = True


class PeerSet:
    """The peers' processes: null, inline, to_thread, background, Celery (front + worker)."""

    def __init__(self, log_dir: Path, names: tuple[str, ...] = ("null", *PEERS)) -> None:
        self.log_dir = log_dir
        self.names = names
        self.children: list[Child] = []
        self.targets: dict[str, HttpTarget] = {}
        self.redis_url: str | None = None
        self._private_redis: Child | None = None

    async def start(self) -> None:
        """Start every peer; return once each answers."""
        env: dict[str, str] = {}
        if "celery" in self.names:
            self.redis_url = await asyncio.to_thread(self._redis)
            env["BENCH_REDIS_URL"] = self.redis_url
            self.children.append(Child(
                "celery-worker",
                [sys.executable, "-m", "celery", "-A", "bench.peers.celery_app", "worker",
                 "--pool", "prefork", "--concurrency", "2", "--loglevel", "WARNING",
                 "--without-gossip", "--without-mingle", "--without-heartbeat",
                 "-n", "bench-worker@%h"], env, self.log_dir).start())
        waits = []
        for name in self.names:
            port = free_port()
            module = "celery_front" if name == "celery" else name
            child = uvicorn_child(name, f"bench.peers.{module}:app", port, self.log_dir, env)
            self.children.append(child.start())
            waits.append(asyncio.to_thread(child.wait_port, port, 60))
            base = f"http://{HOST}:{port}"
            self.targets[name] = HttpTarget(
                name, f"{base}/compute", f"{base}/healthz",
                status=202 if name in ("null", "background") else 200,
                returns_result=name not in ("null", "background"))
        await asyncio.gather(*waits)
        if "celery" in self.names:
            await asyncio.to_thread(self._celery_ready)

    def _redis(self) -> str:
        """A private redis-server for Celery's broker and results."""
        self._private_redis, url = redis_server(self.log_dir)
        return url

    def _celery_ready(self, timeout: float = 60.0) -> None:
        from bench.peers.celery_app import app, compute

        app.conf.broker_url = app.conf.result_backend = self.redis_url
        compute.delay("sum_of_squares", [1.0, 2.0], {}).get(timeout=timeout)

    async def settle_celery(self) -> None:
        """Drop the tasks a run left queued, then wait for the ones the Celery worker had
        already taken to finish (its pool, the front and Redis idle), so they do not load the
        next measurement: a W2 run right after Celery's measured 35 results/s where it
        measured 51 after the inline peer (bench/FINDINGS.md, finding 19)."""
        from bench.peers.celery_app import app

        dropped = await asyncio.to_thread(app.control.purge)
        if dropped:
            logger.info("dropped %d queued Celery tasks", dropped)
        pids = [child.pid for child in self.children if child.name in ("celery-worker", "celery")]
        if self._private_redis is not None:
            pids.append(self._private_redis.pid)
        took = await until_idle(pids)
        logger.info("Celery idle after %.1f s, the machine %.1f s later", took,
                    await until_machine_idle())

    def stop(self) -> None:
        """Stop every peer, then the Redis server."""
        for child in reversed(self.children):
            child.stop()
        self.children.clear()
        if self._private_redis is not None:
            self._private_redis.stop()


def calcstream_target(stack: CalcstreamStack) -> HttpTarget:
    """``POST /v1/calculations?wait=30``: one round trip, the result in the answer."""
    return HttpTarget("calcstream", f"{stack.url}/v1/calculations?wait=30",
                      f"{stack.url}/healthz")
