"""``calcstream dev``: broker, topics, workers and API on this machine, stopped together."""

from __future__ import annotations

import asyncio
import importlib.util
import logging
import os
import signal
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass

from calcstream.broker import EmbeddedBroker
from consumer.admin import ensure_topics, wait_for_broker, wait_for_group
from consumer.settings import BrokerSettings, WorkerSettings

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class DevOptions:
    """What ``calcstream dev`` starts."""

    broker_port: int = 9092
    api_host: str = "127.0.0.1"
    api_port: int = 8000
    workers: int = 1
    partitions: int = 4
    with_api: bool = True
    metrics_port: int = 9101


class DevStack:
    """Supervises the local stack's processes; stops them in reverse order of start."""

    def __init__(self, options: DevOptions, env: dict[str, str] | None = None) -> None:
        self.options = options
        self.env = dict(os.environ if env is None else env)
        self.broker: EmbeddedBroker | None = None
        self.children: list[tuple[str, subprocess.Popen[bytes]]] = []

    def start(self) -> None:
        """Start everything; return once the broker has its topics and children are spawned."""
        if "CALCSTREAM_BOOTSTRAP_SERVERS" in self.env:
            bootstrap = self.env["CALCSTREAM_BOOTSTRAP_SERVERS"]
            logger.info("using the broker at %s (CALCSTREAM_BOOTSTRAP_SERVERS)", bootstrap)
        else:
            self.broker = EmbeddedBroker(self.options.broker_port)
            self.broker.start()
            bootstrap = self.broker.bootstrap_servers
            self.env["CALCSTREAM_BOOTSTRAP_SERVERS"] = bootstrap
        self.env.setdefault("CALCSTREAM_TOPIC_PARTITIONS", str(self.options.partitions))
        # A consumer-group join takes about half the session timeout on the embedded broker.
        self.env.setdefault("CALCSTREAM_SESSION_TIMEOUT_MS", "6000")
        self.env.setdefault("CALCSTREAM_HEARTBEAT_INTERVAL_MS", "1500")
        settings = BrokerSettings(bootstrap_servers=bootstrap,
                                  topic_partitions=self.options.partitions)
        asyncio.run(_prepare(settings))
        for i in range(self.options.workers):
            self._spawn(f"worker-{i + 1}", [sys.executable, "-m", "consumer"],
                        CALCSTREAM_METRICS_PORT=str(self.options.metrics_port + i))
        if self.options.with_api and _api_available():
            # The dashboard's worker figures: the API scrapes these workers' /metrics.
            scraped = ",".join(f"http://127.0.0.1:{self.options.metrics_port + i}/metrics"
                               for i in range(self.options.workers))
            self._spawn("api", [sys.executable, "-m", "producer_api",
                                "--host", self.options.api_host,
                                "--port", str(self.options.api_port)],
                        CALCSTREAM_WORKER_METRICS_URLS=self.env.get(
                            "CALCSTREAM_WORKER_METRICS_URLS", scraped))
        group = self.env.get("CALCSTREAM_GROUP_ID", WorkerSettings.model_fields["group_id"].default)
        asyncio.run(wait_for_group(bootstrap, group, self.options.workers))
        if self.options.with_api and _api_available():
            _wait_for_http(f"http://{self.options.api_host}:{self.options.api_port}/readyz",
                           self.children)
        print(_banner(bootstrap, self.options, settings), flush=True)

    def _spawn(self, name: str, argv: list[str], **env: str) -> None:
        proc = subprocess.Popen(argv, env={**self.env, **env}, start_new_session=True)
        self.children.append((name, proc))
        logger.info("started %s (pid %d)", name, proc.pid)

    def wait(self) -> int:
        """Block until SIGINT/SIGTERM or until a child dies; return the exit code to use."""
        stop = False

        def _stop(signum: int, frame: object) -> None:
            nonlocal stop
            stop = True

        signal.signal(signal.SIGINT, _stop)
        signal.signal(signal.SIGTERM, _stop)
        while not stop:
            for name, proc in self.children:
                if proc.poll() is not None:
                    logger.error("%s exited with code %s; stopping the stack", name,
                                 proc.returncode)
                    return 1
            time.sleep(0.2)
        return 0

    def stop(self) -> None:
        """SIGTERM the API and workers (they drain and commit), then stop the broker."""
        for _, proc in reversed(self.children):
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for name, proc in reversed(self.children):
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                logger.warning("%s did not stop within 30s; killing it", name)
                proc.kill()
                proc.wait()
        self.children.clear()
        if self.broker is not None:
            self.broker.stop()
            self.broker = None
        print("calcstream dev: shut down gracefully", flush=True)


async def _prepare(settings: BrokerSettings) -> None:
    await wait_for_broker(settings.bootstrap_servers)
    await ensure_topics(settings)


def _wait_for_http(
    url: str, children: list[tuple[str, subprocess.Popen[bytes]]], timeout: float = 60.0
) -> None:
    """Poll ``url`` until it answers 200; fail early if a child process died."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for name, proc in children:
            if proc.poll() is not None:
                raise RuntimeError(f"{name} exited with code {proc.returncode} during start-up")
        try:
            with urllib.request.urlopen(url, timeout=1) as response:
                if response.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.1)
    raise TimeoutError(f"{url} did not answer 200 within {timeout:g}s")


def _api_available() -> bool:
    try:
        return importlib.util.find_spec("producer_api.__main__") is not None
    except ModuleNotFoundError:
        return False


def _banner(bootstrap: str, options: DevOptions, settings: BrokerSettings) -> str:
    topics = settings.topics
    lines = [
        "",
        "calcstream dev is up",
        f"  broker    {bootstrap}  (topics {topics.requests}, {topics.results}, {topics.dlq})",
        f"  workers   {options.workers}  (metrics at http://127.0.0.1:{options.metrics_port}"
        f"{'+' if options.workers > 1 else ''}/metrics)",
    ]
    if options.with_api and _api_available():
        lines.append(f"  API       http://{options.api_host}:{options.api_port}  "
                     f"(docs at /docs, metrics at /metrics)")
        lines.append(f"  dashboard http://{options.api_host}:{options.api_port}/dashboard")
    lines += ["  Ctrl-C stops everything.", ""]
    return "\n".join(lines)
