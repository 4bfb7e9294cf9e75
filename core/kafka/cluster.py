"""Several Apache Kafka nodes on this machine, one cluster: each node broker and controller.

    <data_dir>/.calcstream-kafka   marks the directory as one of ours (only such are wiped)
    <data_dir>/node-<id>/          node <id>'s data directory (``core.kafka.node``)

Every node votes in the KRaft quorum (a static ``controller.quorum.voters`` of all of them),
so the cluster keeps its metadata, and elects partition leaders, while a majority runs. All
nodes are formatted with one cluster id and launched together: none answers before a majority
of controllers elected a leader. The cluster is ready when every node's metadata lists every
broker. Topics are replicated ``min(3, size)`` times and written only while
``min.insync.replicas`` (one fewer) replicas have the record, the internal topics
(committed offsets, transaction state) too, so a node can die without losing an acknowledged
write or a commit.
"""

from __future__ import annotations

import logging
import shutil
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from types import TracebackType

from core.kafka import jars
from core.kafka.errors import KafkaStartError
from core.kafka.node import (
    DEFAULT_JVM_OPTIONS,
    MARKER,
    EmbeddedKafka,
    new_cluster_id,
    wipe_data_dir,
)
from core.kafka.probe import metadata_brokers
from core.net import free_port

logger = logging.getLogger(__name__)


def replication_for(size: int) -> tuple[int, int]:
    """Replication factor and ``min.insync.replicas`` for a cluster of ``size`` nodes: three
    copies where there are three nodes, and a write must reach all but one of them."""
    replication = min(3, size)
    return replication, max(1, replication - 1)


def cluster_settings(size: int) -> dict[str, str]:
    """Broker settings, on top of ``single_node_settings``, for one node of ``size``."""
    replication, min_isr = replication_for(size)
    rf, isr = str(replication), str(min_isr)
    return {
        "default.replication.factor": rf,
        "min.insync.replicas": isr,
        "offsets.topic.replication.factor": rf,
        "transaction.state.log.replication.factor": rf,
        "transaction.state.log.min.isr": isr,
        "share.coordinator.state.topic.replication.factor": rf,
        "share.coordinator.state.topic.min.isr": isr,
    }


def stored_cluster_id(data_dir: Path) -> str | None:
    """The cluster id a node's formatted storage belongs to, if it was formatted."""
    meta = data_dir / "log" / "meta.properties"
    if not meta.exists():
        return None
    for line in meta.read_text().splitlines():
        key, _, value = line.partition("=")
        if key.strip() == "cluster.id":
            return value.strip()
    return None


class EmbeddedCluster:
    """``size`` ``EmbeddedKafka`` nodes in one KRaft quorum. ``start()``/``stop()``, or ``with``.

    ``ports``: the client listeners (default: free ports); the controllers take free ports.
    ``data_dir``: where the nodes keep their data (``node-<id>`` each); None makes a temporary
    one, removed on ``__exit__``. ``settings`` go on top of ``cluster_settings``. A node is
    addressed by its id, 1 to ``size``.
    """

    def __init__(
        self, size: int = 3, *, host: str = "127.0.0.1", ports: Sequence[int] | None = None,
        data_dir: Path | None = None, max_message_bytes: int = 8 * 1024 * 1024,
        settings: Mapping[str, str] | None = None,
        jvm_options: Sequence[str] = DEFAULT_JVM_OPTIONS, progress: jars.Progress | None = None,
    ) -> None:
        if size < 1:
            raise ValueError(f"a cluster has at least one node, not {size}")
        ports = list(ports) if ports is not None else [free_port(host) for _ in range(size)]
        if len(ports) != size:
            raise ValueError(f"{size} nodes need {size} ports, got {ports}")
        self.size = size
        self.host = host
        self._temporary = data_dir is None
        self.data_dir = Path(tempfile.mkdtemp(prefix="calcstream-kafka-cluster-")) \
            if data_dir is None else Path(data_dir)
        controllers = [free_port(host) for _ in range(size)]
        quorum = ",".join(f"{i + 1}@{host}:{port}" for i, port in enumerate(controllers))
        cluster_id = stored_cluster_id(self.data_dir / "node-1") or new_cluster_id()
        self.nodes = [
            EmbeddedKafka(port, host=host, data_dir=self.data_dir / f"node-{i + 1}",
                          max_message_bytes=max_message_bytes,
                          settings={**cluster_settings(size), **(settings or {})},
                          jvm_options=jvm_options, node_id=i + 1, controller_port=controller,
                          quorum=quorum, cluster_id=cluster_id, progress=progress,
                          probe=self._lists_every_broker(port))
            for i, (port, controller) in enumerate(zip(ports, controllers, strict=True))]

    def _lists_every_broker(self, port: int) -> Callable[[], bool]:
        host, size = self.host, self.size
        return lambda: metadata_brokers(host, port) >= size

    @property
    def cluster_id(self) -> str:
        """The id every node's storage is formatted with."""
        return str(self.nodes[0].cluster_id)

    @property
    def bootstrap_servers(self) -> str:
        """Every node's ``host:port``, comma-separated, for Kafka clients."""
        return ",".join(node.bootstrap_servers for node in self.nodes)

    def node(self, node_id: int) -> EmbeddedKafka:
        """The node with this id (1 to ``size``)."""
        if not 1 <= node_id <= self.size:
            raise KeyError(f"no node {node_id} in a cluster of {self.size}")
        return self.nodes[node_id - 1]

    def start(self, timeout: float = 120.0) -> None:
        """Launch every node that is not running, at once, and return when each one's metadata
        lists every broker; ``KafkaStartError`` (the others stopped) if one does not."""
        self._prepare_dir()
        jars.classpath(self.nodes[0].progress)  # a first run fetches the jars once, not per node
        started = time.monotonic()
        waiting = [node for node in self.nodes if not node.running()]
        try:
            with ThreadPoolExecutor(len(waiting) or 1) as pool:
                # Formatting runs a JVM per node: side by side, not one after the other.
                list(pool.map(EmbeddedKafka.launch, waiting))
                list(pool.map(lambda node: node.wait_until_ready(started + timeout), waiting))
        except BaseException:
            self.stop()
            raise
        logger.info("Apache Kafka cluster %s of %d nodes answering on %s after %.1fs",
                    self.cluster_id, self.size, self.bootstrap_servers, time.monotonic() - started)

    def start_node(self, node_id: int, timeout: float = 90.0) -> None:
        """Start one node again on its data; return once its metadata lists every broker
        (it registered with the quorum and is no longer fenced)."""
        self.node(node_id).start(timeout)

    def stop_node(self, node_id: int, timeout: float = 30.0) -> None:
        """Controlled shutdown of one node: its partitions' leadership moves first."""
        self.node(node_id).stop(timeout)

    def kill(self, node_id: int) -> None:
        """SIGKILL one node, as a crash would; its data stays."""
        self.node(node_id).kill()

    def pause(self, node_id: int) -> None:
        """SIGSTOP one node: it holds its connections and answers nothing, heartbeats included."""
        self.node(node_id).pause()

    def resume(self, node_id: int) -> None:
        """SIGCONT one node after ``pause``."""
        self.node(node_id).resume()

    def running(self) -> list[int]:
        """Ids of the nodes whose JVM is alive."""
        return [node.node_id for node in self.nodes if node.running()]

    def stop(self, timeout: float = 30.0) -> None:
        """Controlled shutdown of every node, all at once (a node stopping alone would wait
        for the quorum it is leaving); the data stays. Safe to call twice."""
        with ThreadPoolExecutor(self.size) as pool:
            list(pool.map(lambda node: node.stop(timeout), self.nodes))

    def wipe(self) -> None:
        """Delete every node's data (the nodes must be stopped)."""
        if self.running():
            raise KafkaStartError("stop the cluster before wiping its data")
        wipe_data_dir(self.data_dir)

    def close(self) -> None:
        """Stop every node; delete the data if it lived in a temporary directory (SIGKILLing
        the nodes then, as ``EmbeddedKafka.close`` does)."""
        if self._temporary and not any(node.archiving for node in self.nodes):
            for node in self.nodes:
                node.kill()
        else:
            self.stop()
        if self._temporary:
            shutil.rmtree(self.data_dir, ignore_errors=True)

    def __enter__(self) -> EmbeddedCluster:
        self.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def _prepare_dir(self) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        marker = self.data_dir / MARKER
        if not marker.exists():
            if any(self.data_dir.iterdir()):
                raise KafkaStartError(f"{self.data_dir} holds files that are not an embedded "
                                      "Kafka cluster's; choose an empty or new directory")
            marker.write_text(f"Apache Kafka {jars.kafka_version()} cluster of {self.size} "
                              "nodes, kept by calcstream\n")
