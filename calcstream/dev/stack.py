"""``calcstream dev``: Apache Kafka, topics, workers and API on this machine, stopped together.

The broker keeps its data in ``default_data_dir()`` (or ``--data-dir``), so results, committed
offsets and the API's recovery window survive a restart of the stack; ``--fresh`` starts empty.
With ``brokers`` above 1 it runs a cluster of that many nodes instead (``core.kafka.cluster``:
consecutive ports from ``broker_port``, a data directory each under ``data_dir``, topics
replicated three times). Ctrl-C (SIGINT to the terminal's foreground process group) reaches
only this supervisor: the broker and the services run in sessions of their own. It stops the
API, lets the workers drain and commit, and stops the broker last (a controlled shutdown); so
do SIGTERM and SIGHUP (the terminal closing), which would otherwise end the supervisor alone and
leave the rest running. A supervisor killed before it can stop anything (SIGKILL) leaves nothing
running either: each child is tethered to it (``core.tether``), which stops the services, then
the broker.
"""

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
from collections.abc import Coroutine
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from calcstream.dev import secure
from consumer.settings import WorkerSettings
from core.admin import ensure_topics, wait_for_broker, wait_for_group
from core.kafka import EmbeddedCluster, EmbeddedKafka, wipe_data_dir
from core.kafka.cluster import replication_for
from core.settings import BrokerSettings
from core.tether import release, tether

logger = logging.getLogger(__name__)

T = TypeVar("T")

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
"""What stops a stack run in a terminal: Ctrl-C, a kill, the terminal closing."""


def interrupt_on_stop() -> None:
    """Make every one of ``STOP_SIGNALS`` a Ctrl-C (``KeyboardInterrupt``), so that a stop while
    something starts unwinds through its clean-up instead of ending the process there."""
    for signum in STOP_SIGNALS:
        signal.signal(signum, signal.default_int_handler)


def run_stoppable(main: Coroutine[Any, Any, T]) -> T:
    """``asyncio.run(main)`` for a start-up step: one of ``STOP_SIGNALS`` cancels ``main`` where
    it awaits, as ``asyncio.run`` does on Ctrl-C, and ``KeyboardInterrupt`` is raised once it
    has unwound (a second signal raises it at once).

    ``interrupt_on_stop``'s ``KeyboardInterrupt`` may land anywhere, inside the event loop's own
    code too, and can leave ``main`` waiting for a wake-up that never comes: the loop then closes
    with it pending and its clean-up runs later, with no loop to run on."""
    with asyncio.Runner() as runner:
        loop = runner.get_loop()
        task = loop.create_task(main)
        signalled = False

        def stop(signum: int, frame: object) -> None:
            nonlocal signalled
            if signalled:
                raise KeyboardInterrupt
            signalled = True
            task.cancel()
            loop.call_soon_threadsafe(lambda: None)  # wake a loop waiting in select()

        previous = {signum: signal.signal(signum, stop) for signum in STOP_SIGNALS}
        try:
            result = loop.run_until_complete(task)
        except asyncio.CancelledError:
            if not signalled:
                raise
            raise KeyboardInterrupt from None
        finally:
            for signum, handler in previous.items():
                signal.signal(signum, handler if handler is not None else signal.SIG_DFL)
        if signalled:  # main caught its cancellation and returned
            raise KeyboardInterrupt
        return result


def default_data_dir() -> Path:
    """Where the local stack's broker keeps its data: ``$XDG_DATA_HOME/calcstream/kafka``, else
    ``~/.local/share/calcstream/kafka``."""
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "calcstream" / "kafka"


def _say(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


@dataclass(frozen=True)
class DevOptions:
    """What ``calcstream dev`` starts."""

    broker_port: int = 9092
    brokers: int = 1
    """Kafka nodes: 1, or a cluster on ``broker_port`` and the ports after it."""
    api_host: str = "127.0.0.1"
    api_port: int = 8000
    workers: int = 1
    partitions: int = 4
    with_api: bool = True
    metrics_port: int = 9101
    data_dir: Path = field(default_factory=default_data_dir)
    fresh: bool = False
    secure: bool = False
    """SASL_SSL with ACLs (``calcstream.dev.secure``)."""


class DevStack:
    """Supervises the local stack's processes; stops them in reverse order of start."""

    def __init__(self, options: DevOptions, env: dict[str, str] | None = None) -> None:
        self.options = options
        self.env = dict(os.environ if env is None else env)
        self.broker: EmbeddedKafka | EmbeddedCluster | None = None
        self.children: list[tuple[str, subprocess.Popen[bytes]]] = []
        self.credentials: secure.Credentials | None = None

    def start(self) -> None:
        """Start everything; return once the broker has its topics and children are spawned."""
        options = self.options
        if "CALCSTREAM_BOOTSTRAP_SERVERS" in self.env:
            if options.secure:
                raise ValueError("--secure starts a broker of its own; unset "
                                 "CALCSTREAM_BOOTSTRAP_SERVERS (and set the SASL/TLS "
                                 "variables to use a secured cluster of yours)")
            bootstrap = self.env["CALCSTREAM_BOOTSTRAP_SERVERS"]
            logger.info("using the broker at %s (CALCSTREAM_BOOTSTRAP_SERVERS)", bootstrap)
        else:
            if options.fresh:
                wipe_data_dir(options.data_dir)
                secure.wipe_credentials(options.data_dir)
            max_bytes = int(self.env.get(
                "CALCSTREAM_MAX_MESSAGE_BYTES",
                BrokerSettings.model_fields["max_message_bytes"].default))
            if options.secure:
                if options.brokers > 1:
                    raise ValueError("--secure runs one node; drop --brokers")
                self.credentials = secure.Credentials.load_or_create(options.data_dir)
                self.broker = secure.node(options.broker_port, options.data_dir,
                                          self.credentials, _say, max_bytes)
            elif options.brokers > 1:
                self.broker = EmbeddedCluster(
                    options.brokers, data_dir=options.data_dir, progress=_say,
                    ports=[options.broker_port + i for i in range(options.brokers)],
                    max_message_bytes=max_bytes)
                self.env.setdefault("CALCSTREAM_REPLICATION_FACTOR",
                                    str(replication_for(options.brokers)[0]))
            else:
                self.broker = EmbeddedKafka(options.broker_port, data_dir=options.data_dir,
                                            progress=_say, max_message_bytes=max_bytes)
            self.broker.start()
            bootstrap = self.broker.bootstrap_servers
            self.env["CALCSTREAM_BOOTSTRAP_SERVERS"] = bootstrap
        self.env.setdefault("CALCSTREAM_TOPIC_PARTITIONS", str(options.partitions))
        settings = BrokerSettings(bootstrap_servers=bootstrap,
                                  topic_partitions=options.partitions,
                                  replication_factor=int(self.env.get(
                                      "CALCSTREAM_REPLICATION_FACTOR", "1")))
        group = self.env.get("CALCSTREAM_GROUP_ID", WorkerSettings.model_fields["group_id"].default)
        creds = self.credentials
        watch: BrokerSettings | str = bootstrap
        if creds is not None:
            run_stoppable(secure.prepare(bootstrap, creds, settings, group))
            self.env["CALCSTREAM_CREATE_TOPICS"] = "false"  # made above, by admin
            watch = creds.settings(bootstrap, "admin")
        else:
            run_stoppable(_prepare(settings))
        for i in range(options.workers):
            self._spawn(f"worker-{i + 1}", [sys.executable, "-m", "consumer"],
                        CALCSTREAM_METRICS_PORT=str(options.metrics_port + i),
                        **(creds.env(bootstrap, "worker") if creds else {}))
        if self.options.with_api and _api_available():
            # The dashboard's worker figures: the API scrapes these workers' /metrics.
            scraped = ",".join(f"http://127.0.0.1:{self.options.metrics_port + i}/metrics"
                               for i in range(self.options.workers))
            self._spawn("api", [sys.executable, "-m", "producer_api",
                                "--host", self.options.api_host,
                                "--port", str(self.options.api_port)],
                        CALCSTREAM_WORKER_METRICS_URLS=self.env.get(
                            "CALCSTREAM_WORKER_METRICS_URLS", scraped),
                        **(creds.env(bootstrap, "api") if creds else {}))
        # Up means a request is answered at once: the group owns every request partition.
        run_stoppable(wait_for_group(watch, group, self.options.workers,
                                     topic=settings.requests_topic))
        if self.options.with_api and _api_available():
            _wait_for_http(f"http://{self.options.api_host}:{self.options.api_port}/readyz",
                           self.children)
        print(_banner(bootstrap, self.options, settings, self.broker), flush=True)
        if creds is not None:
            print(f"  secured   SASL_SSL with ACLs; log in as user 'cli' with\n"
                  f"            set -a; . {creds.write_cli_env(bootstrap)}; set +a\n"
                  f"            (CA, certificates and passwords in {creds.directory})\n",
                  flush=True)

    def _spawn(self, name: str, argv: list[str], **env: str) -> None:
        proc = subprocess.Popen(argv, env={**self.env, **env}, start_new_session=True)
        self.children.append((name, proc))
        tether(proc)  # stopped before the broker even if this supervisor is SIGKILLed
        logger.info("started %s (pid %d)", name, proc.pid)

    def wait(self) -> int:
        """Block until one of ``STOP_SIGNALS`` or until a child dies; return the exit code to
        use."""
        stop = False

        def _stop(signum: int, frame: object) -> None:
            nonlocal stop
            stop = True

        for signum in STOP_SIGNALS:
            signal.signal(signum, _stop)
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
            release(proc)
        self.children.clear()
        if self.broker is not None:
            self.broker.stop()
            self.broker = None
        print("calcstream dev: shut down gracefully", flush=True)


async def _prepare(settings: BrokerSettings) -> None:
    await wait_for_broker(settings)
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


def _banner(bootstrap: str, options: DevOptions, settings: BrokerSettings,
            broker: EmbeddedKafka | EmbeddedCluster | None) -> str:
    topics = settings.topics
    lines = [
        "",
        "calcstream dev is up",
        f"  broker    {bootstrap}  (topics {topics.requests}, {topics.results}, {topics.dlq})",
    ]
    if isinstance(broker, EmbeddedCluster):
        replication, min_isr = replication_for(broker.size)
        lines.append(f"  cluster   {broker.size} nodes, topics replicated {replication} times, "
                     f"min.insync.replicas {min_isr}")
        lines.append(f"  data      {broker.data_dir}  (node-1 to node-{broker.size}, kept across "
                     "restarts; --fresh empties it; each node's log in node-N/logs/server.log)")
    elif broker is not None:
        lines.append(f"  data      {broker.data_dir}  (kept across restarts; --fresh empties "
                     f"it; broker log in {broker.log_path})")
    lines += [
        f"  workers   {options.workers}  (metrics at http://127.0.0.1:{options.metrics_port}"
        f"{'+' if options.workers > 1 else ''}/metrics)",
    ]
    if options.with_api and _api_available():
        lines.append(f"  API       http://{options.api_host}:{options.api_port}  "
                     f"(docs at /docs, metrics at /metrics)")
        lines.append(f"  dashboard http://{options.api_host}:{options.api_port}/dashboard")
    lines += ["  Ctrl-C stops everything.", ""]
    return "\n".join(lines)
