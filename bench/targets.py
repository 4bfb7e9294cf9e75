"""Who is benchmarked: the HTTP peers (uvicorn processes), Celery, and the calcstream stack."""

from __future__ import annotations

import asyncio
import logging
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path

import redis

from bench.procs import HOST, Child, free_port, uvicorn_child
from bench.stack import CalcstreamStack

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
        """A spare database of the Redis at 6379, or a private redis-server if none answers."""
        try:
            client = redis.Redis(host=HOST, port=6379, socket_timeout=1)
            client.ping()
            for db in (13, 12, 11, 10, 9, 14, 15):
                if redis.Redis(host=HOST, port=6379, db=db).dbsize() == 0:
                    return f"redis://{HOST}:6379/{db}"
            raise RuntimeError("no empty Redis database among 9-15 at 127.0.0.1:6379")
        except redis.ConnectionError:
            if shutil.which("redis-server") is None:
                raise RuntimeError("no Redis answers at 127.0.0.1:6379 and redis-server is "
                                   "not installed") from None
        port = free_port()
        self._private_redis = Child("redis", ["redis-server", "--port", str(port), "--bind",
                                              HOST, "--save", "", "--appendonly", "no"],
                                    log_dir=self.log_dir).start()
        self._private_redis.wait_port(port)
        return f"redis://{HOST}:{port}/0"

    def _celery_ready(self, timeout: float = 60.0) -> None:
        from bench.peers.celery_app import app, compute

        app.conf.broker_url = app.conf.result_backend = self.redis_url
        compute.delay("sum_of_squares", [1.0, 2.0], {}).get(timeout=timeout)

    async def settle_celery(self, seconds: float = 3.0) -> None:
        """Drop the tasks a run left queued, so they do not load the next measurement."""
        from bench.peers.celery_app import app

        dropped = await asyncio.to_thread(app.control.purge)
        if dropped:
            logger.info("dropped %d queued Celery tasks", dropped)
        await asyncio.sleep(seconds)

    def stop(self) -> None:
        """Stop every peer, then empty the Redis database the bench used."""
        for child in reversed(self.children):
            child.stop()
        self.children.clear()
        if self._private_redis is not None:
            self._private_redis.stop()
        elif self.redis_url is not None:
            try:
                redis.Redis.from_url(self.redis_url).flushdb()
            except redis.RedisError as exc:
                logger.warning("could not empty %s: %s", self.redis_url, exc)


def calcstream_target(stack: CalcstreamStack) -> HttpTarget:
    """``POST /v1/calculations?wait=30``: one round trip, the result in the answer."""
    return HttpTarget("calcstream", f"{stack.url}/v1/calculations?wait=30",
                      f"{stack.url}/healthz")
