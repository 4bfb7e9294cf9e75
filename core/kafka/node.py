"""One Apache Kafka node on this machine: KRaft broker and controller in one JVM.

The data directory holds everything the node keeps::

    <data_dir>/.calcstream-kafka   marks the directory as one of ours (only such are wiped)
    <data_dir>/server.properties   written at every start from the settings below
    <data_dir>/log/                the node's log segments and metadata (log.dirs)
    <data_dir>/logs/server.log     the broker's own log (core/kafka/log4j2.xml)
    <data_dir>/logs/jvm.log        what the JVM printed (stdout and stderr)

Storage is formatted on first start (``kafka.tools.StorageTool format`` with a static
``controller.quorum.voters``), so a node started again on the same directory keeps its topics,
records and committed offsets. The JVM runs in a session of its own: a Ctrl-C in the terminal
that started it reaches whoever supervises it, which then stops it last.
"""

from __future__ import annotations

import base64
import logging
import os
import shlex
import shutil
import signal
import subprocess
import tempfile
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from importlib import resources
from pathlib import Path
from types import TracebackType

from core.kafka import jars
from core.kafka.errors import KafkaStartError
from core.kafka.probe import metadata_brokers
from core.net import free_port, port_open
from core.tether import BROKERS, release, tether

logger = logging.getLogger(__name__)

MARKER = ".calcstream-kafka"
# A record batch may carry framing beyond the largest value a client sends.
BATCH_FRAMING = 1024
# For a node that shares two cores with the services (docs/kafka.md, "Broker settings"): the
# serial collector has no concurrent threads competing for them, and the client compiler (C1)
# alone compiles the broker's hot code in a fraction of the CPU the optimising one spends
# recompiling it for minutes after every start.
DEFAULT_JVM_OPTIONS = ("-Xms256m", "-Xmx1g", "-XX:+UseSerialGC", "-XX:TieredStopAtLevel=1",
                       "-XX:+ExitOnOutOfMemoryError", "-Djava.awt.headless=true")
JVM_OPTIONS_ENV = "CALCSTREAM_KAFKA_JVM_OPTIONS"
"""More JVM options for every embedded node, after the defaults (so they win), split as a
shell would."""


def extra_jvm_options() -> list[str]:
    """The options ``JVM_OPTIONS_ENV`` adds, as a node launched now gets them."""
    return shlex.split(os.environ.get(JVM_OPTIONS_ENV, ""))
_CLASS_ARCHIVE = "classes.jsa"


def single_node_settings(max_message_bytes: int) -> dict[str, str]:
    """Broker settings for one node that is the whole cluster."""
    return {
        "num.partitions": "4",
        "default.replication.factor": "1",
        "min.insync.replicas": "1",
        # Topics exist because someone created them: a typo in a topic name is an error.
        "auto.create.topics.enable": "false",
        "offsets.topic.replication.factor": "1",
        "offsets.topic.num.partitions": "4",
        "transaction.state.log.replication.factor": "1",
        "transaction.state.log.min.isr": "1",
        "transaction.state.log.num.partitions": "4",
        "share.coordinator.state.topic.replication.factor": "1",
        "share.coordinator.state.topic.min.isr": "1",
        "share.coordinator.state.topic.num.partitions": "1",
        # A group's first member is assigned at once, not after the default 3 s.
        "group.initial.rebalance.delay.ms": "0",
        # The fault tests run workers with 1 s sessions (Kafka's floor is 6 s).
        "group.min.session.timeout.ms": "500",
        # A node restarted after a crash registers again only once its previous registration
        # expired: 3 s after it died instead of the default 9 s.
        "broker.heartbeat.interval.ms": "500",
        "broker.session.timeout.ms": "3000",
        "message.max.bytes": str(max_message_bytes + BATCH_FRAMING),
        "num.network.threads": "2",
        "num.io.threads": "4",
        "background.threads": "4",
        "num.recovery.threads.per.data.dir": "2",
        "log.cleaner.threads": "1",
        "log.segment.bytes": str(128 * 1024 * 1024),
        "log.retention.hours": "168",
        "log.retention.bytes": str(1024 * 1024 * 1024),
    }


class EmbeddedKafka:
    """An Apache Kafka node subprocess. ``start()``/``stop()``, or ``with``.

    ``data_dir``: where it keeps its data; None makes a temporary one, removed on ``__exit__``.
    ``settings``: broker settings on top of ``single_node_settings``. ``quorum`` (the
    ``controller.quorum.voters``), ``node_id`` and ``cluster_id`` make it one node of several
    (``core.kafka.cluster``); by default it is its own quorum of one. ``listener`` is the
    client listener's security protocol (the controller's stays PLAINTEXT on ``host``);
    ``format_options`` go to the first start's ``StorageTool format`` (``--add-scram`` users);
    ``probe`` says whether the node answers (default: a plaintext Metadata request lists a
    broker).
    """

    def __init__(
        self, port: int = 9092, *, host: str = "127.0.0.1", data_dir: Path | None = None,
        max_message_bytes: int = 8 * 1024 * 1024, settings: Mapping[str, str] | None = None,
        jvm_options: Sequence[str] = DEFAULT_JVM_OPTIONS, node_id: int = 1,
        controller_port: int | None = None, quorum: str | None = None,
        cluster_id: str | None = None, progress: jars.Progress | None = None,
        listener: str = "PLAINTEXT", format_options: Sequence[str] = (),
        probe: Callable[[], bool] | None = None,
    ) -> None:
        self.host = host
        self.port = port
        self.node_id = node_id
        self.controller_port = controller_port or free_port(host)
        self.quorum = quorum or f"{node_id}@{host}:{self.controller_port}"
        self.cluster_id = cluster_id
        self._temporary = data_dir is None
        self.data_dir = Path(tempfile.mkdtemp(prefix="calcstream-kafka-")) if data_dir is None \
            else Path(data_dir)
        self.settings = {**single_node_settings(max_message_bytes), **(settings or {})}
        self.jvm_options = list(jvm_options)
        self.progress = progress
        self.listener = listener
        self.format_options = list(format_options)
        self._probe = probe or (lambda: metadata_brokers(self.host, self.port) > 0)
        self._proc: subprocess.Popen[bytes] | None = None
        self._launched = 0.0
        self._dumping: Path | None = None

    @property
    def bootstrap_servers(self) -> str:
        """``host:port`` for Kafka clients."""
        return f"{self.host}:{self.port}"

    @property
    def pid(self) -> int | None:
        """Process id of the JVM while it runs."""
        return self._proc.pid if self._proc else None

    @property
    def log_path(self) -> Path:
        """The broker's own log."""
        return self.data_dir / "logs" / "server.log"

    def running(self) -> bool:
        """The JVM is alive (it may still be starting)."""
        return self._proc is not None and self._proc.poll() is None

    def start(self, timeout: float = 90.0) -> None:
        """Start the node (formatting its storage the first time) and return once it answers
        a metadata request; ``KafkaStartError`` with the end of its log if it does not. A start
        that is interrupted (Ctrl-C) stops the JVM it launched: in a session of its own, it
        would outlive the caller."""
        if self._proc is not None:
            return
        self.launch()
        try:
            self.wait_until_ready(self._launched + timeout)
        except BaseException:
            self.stop()
            raise

    def launch(self) -> None:
        """Format the storage the first time and start the JVM, without waiting for it to
        answer: the nodes of a quorum answer only once a majority of them runs."""
        if self._proc is not None:
            return
        if port_open(self.host, self.port):
            raise KafkaStartError(f"port {self.host}:{self.port} is already in use: another "
                                  "broker (or something else) listens there")
        java = jars.java_executable()
        cp = jars.classpath(self.progress)
        self._launched = time.monotonic()
        props = self._write_properties()
        if not (self.data_dir / "log" / "meta.properties").exists():
            self._format(java, cp, props)
        logs = self.data_dir / "logs"
        logs.mkdir(exist_ok=True)
        argv = [java, *self.jvm_options, *extra_jvm_options(), *self._class_archive(),
                f"-Dlog4j2.configurationFile={_log4j_config()}", f"-Dkafka.logs.dir={logs}",
                "-cp", cp, "kafka.Kafka", str(props)]
        with (logs / "jvm.log").open("ab") as out:
            # A session of its own: the terminal's Ctrl-C goes to the supervisor, not to the
            # broker, which must outlive the services that still drain into it.
            self._proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT,
                                          stdin=subprocess.DEVNULL, start_new_session=True)
        # ... but not outlive it: a SIGKILLed supervisor would leave the port taken.
        tether(self._proc, BROKERS)

    def wait_until_ready(self, deadline: float) -> None:
        """Return once the launched node answers (its ``probe``); ``KafkaStartError`` with the
        end of its log if it exits first or ``deadline`` (``time.monotonic()``) passes."""
        proc = self._proc
        if proc is None:
            raise KafkaStartError(f"Kafka node {self.node_id} was not launched")
        while not self._probe():
            if proc.poll() is not None:
                self._proc = None
                release(proc)
                raise KafkaStartError(f"Kafka node {self.node_id} exited with code "
                                      f"{proc.returncode} during start-up:\n{self._log_tail()}")
            if time.monotonic() > deadline:
                self.kill()
                raise KafkaStartError(f"Kafka node {self.node_id} did not answer on "
                                      f"{self.bootstrap_servers} in time:\n{self._log_tail()}")
            time.sleep(0.05)
        logger.info("Apache Kafka %s (node %d) answering on %s after %.1fs, pid %d, data in %s",
                    jars.kafka_version(), self.node_id, self.bootstrap_servers,
                    time.monotonic() - self._launched, proc.pid, self.data_dir)

    def stop(self, timeout: float = 30.0) -> None:
        """Controlled shutdown (SIGTERM), SIGKILL after ``timeout``; the data stays. Safe to
        call twice."""
        proc, self._proc = self._proc, None
        if proc is None:
            return
        if proc.poll() is None:
            proc.send_signal(signal.SIGCONT)  # a paused JVM handles SIGTERM only once running
            proc.terminate()
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                logger.warning("Kafka node %d did not shut down within %gs; killing it",
                               self.node_id, timeout)
                proc.kill()
                proc.wait()
        release(proc)
        self._keep_class_archive()

    def kill(self) -> None:
        """SIGKILL the JVM, as a crash would; the data stays."""
        proc, self._proc = self._proc, None
        if proc is not None:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
            release(proc)
        self._keep_class_archive()

    def pause(self) -> None:
        """SIGSTOP the JVM: it holds its connections and answers nothing."""
        if self._proc is not None:
            self._proc.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        """SIGCONT after ``pause()``."""
        if self._proc is not None:
            self._proc.send_signal(signal.SIGCONT)

    def wipe(self) -> None:
        """Delete the stored data (the node must be stopped); refuses a directory that is
        neither empty nor one of ours."""
        if self.running():
            raise KafkaStartError("stop the node before wiping its data")
        wipe_data_dir(self.data_dir)

    def close(self) -> None:
        """Stop the node; delete its data if it lived in a temporary directory. Data that is
        deleted needs no controlled shutdown: such a node is SIGKILLed, unless its exit writes
        the class archive."""
        if self._temporary and not self.archiving:
            self.kill()
        else:
            self.stop()
        if self._temporary:
            shutil.rmtree(self.data_dir, ignore_errors=True)

    @property
    def archiving(self) -> bool:
        """The JVM writes the class archive when it exits (the first start without one)."""
        return self._dumping is not None

    def __enter__(self) -> EmbeddedKafka:
        self.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def _write_properties(self) -> Path:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        marker = self.data_dir / MARKER
        if not marker.exists():
            if any(p for p in self.data_dir.iterdir()):
                raise KafkaStartError(f"{self.data_dir} holds files that are not an embedded "
                                      "Kafka's; choose an empty or new directory")
            marker.write_text(f"Apache Kafka {jars.kafka_version()} data, kept by calcstream\n")
        props = {
            "process.roles": "broker,controller",
            "node.id": str(self.node_id),
            "controller.quorum.voters": self.quorum,
            "listeners": f"{self.listener}://{self.host}:{self.port},"
                         f"CONTROLLER://{self.host}:{self.controller_port}",
            "advertised.listeners": f"{self.listener}://{self.host}:{self.port}",
            "controller.listener.names": "CONTROLLER",
            "inter.broker.listener.name": self.listener,
            "listener.security.protocol.map": f"{self.listener}:{self.listener},"
                                              "CONTROLLER:PLAINTEXT",
            "log.dirs": str(self.data_dir / "log"),
            **self.settings,
        }
        path = self.data_dir / "server.properties"
        path.write_text("".join(f"{k}={v}\n" for k, v in props.items()))
        return path

    def _format(self, java: str, cp: str, props: Path) -> None:
        cluster_id = self.cluster_id or new_cluster_id()
        done = subprocess.run(
            [java, *self.jvm_options, *self._class_archive(dump=False), "-cp", cp,
             f"-Dlog4j2.configurationFile={_log4j_config()}",
             f"-Dkafka.logs.dir={self.data_dir / 'logs'}",
             "kafka.tools.StorageTool", "format", "-t", cluster_id, "-c", str(props),
             *self.format_options],
            capture_output=True, text=True, check=False)
        if done.returncode != 0:
            raise KafkaStartError(f"formatting {self.data_dir / 'log'} failed:\n"
                                  f"{done.stdout}{done.stderr}")
        logger.info("formatted Kafka storage in %s (cluster %s)", self.data_dir / "log",
                    cluster_id)

    def _class_archive(self, dump: bool = True) -> list[str]:
        """JVM options that load the broker's classes from a shared archive (start-up 2.1 s
        instead of 3.7 s); the first start without one writes it when it exits."""
        archive = jars.install_dir() / _CLASS_ARCHIVE
        if archive.exists():
            return [f"-XX:SharedArchiveFile={archive}", "-Xlog:cds=off", "-Xlog:cds+dynamic=off"]
        if not dump:
            return []
        self._dumping = archive.with_name(f"{archive.name}.{os.getpid()}.{id(self)}")
        return [f"-XX:ArchiveClassesAtExit={self._dumping}"]

    def _keep_class_archive(self) -> None:
        dumping, self._dumping = self._dumping, None
        if dumping is None:
            return
        if dumping.exists() and dumping.stat().st_size > 0:
            dumping.replace(dumping.with_name(_CLASS_ARCHIVE))
        else:
            dumping.unlink(missing_ok=True)

    def _log_tail(self, lines: int = 15) -> str:
        out = []
        for path in (self.log_path, self.data_dir / "logs" / "jvm.log"):
            if path.exists():
                text = path.read_text(errors="replace").splitlines()[-lines:]
                out.append(f"--- {path}\n" + "\n".join(text))
        return "\n".join(out) or "(no log written)"


def wipe_data_dir(path: Path) -> None:
    """Remove a node's data directory, if it is one (or empty, or absent)."""
    if not path.exists():
        return
    if not (path / MARKER).exists() and any(path.iterdir()):
        raise KafkaStartError(f"{path} is not an embedded Kafka's data directory; not deleting it")
    shutil.rmtree(path)


def _log4j_config() -> Path:
    return Path(str(resources.files("core.kafka") / "log4j2.xml"))


def new_cluster_id() -> str:
    """A random cluster id as Kafka writes them: 16 bytes, URL-safe base64 without padding,
    never starting with "-" (Kafka's ``Uuid.randomUuid`` skips those too: ``StorageTool``'s
    option parser would read ``-t -x...`` as a missing value and another option)."""
    while True:
        cluster_id = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        if not cluster_id.startswith("-"):
            return cluster_id
