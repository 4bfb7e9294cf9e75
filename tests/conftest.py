"""Shared fixtures: one real Apache Kafka broker per test session, fresh topics per test, a
three-node cluster for the tests that ask for one, and a Redis server of the tests' own.

The broker is the embedded Apache Kafka (``core.kafka``: jars from Maven, one JVM) on free
ports, in a temporary data directory; the cluster is three more such JVMs, started only when a
test asks for ``kafka_cluster``. With ``CALCSTREAM_TEST_KAFKA=docker`` and a Docker
engine, testcontainers runs the same Kafka version instead; the fixtures are the same.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import AsyncIterator, Iterator

import pytest
import redis
from hypothesis import settings

from core.admin import wait_for_broker
from core.kafka import EmbeddedCluster, EmbeddedKafka, kafka_version
from core.net import free_port
from schemas.topics import Topics
from tests.kafka import Deployment, create_topics, unique

# Property tests draw the same examples on every run (CI must be deterministic); set
# HYPOTHESIS_PROFILE=explore to search new examples locally.
settings.register_profile("deterministic", derandomize=True, database=None, deadline=None)
settings.register_profile("explore", deadline=None, max_examples=1000)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "deterministic"))


@pytest.fixture(scope="session")
def kafka_bootstrap() -> Iterator[str]:
    """Bootstrap address of a real broker that answers metadata requests."""
    if os.environ.get("CALCSTREAM_TEST_KAFKA") == "docker":
        from testcontainers.kafka import KafkaContainer

        with KafkaContainer(f"apache/kafka:{kafka_version()}") as kafka:
            bootstrap = kafka.get_bootstrap_server()
            asyncio.run(wait_for_broker(bootstrap, timeout=60))
            yield bootstrap
        return
    with EmbeddedKafka(free_port()) as broker:
        yield broker.bootstrap_servers


@pytest.fixture(scope="session")
def session_cluster() -> Iterator[EmbeddedCluster]:
    """Three KRaft nodes (broker and controller each) in one cluster, for the whole session."""
    with EmbeddedCluster(3) as cluster:
        yield cluster


@pytest.fixture
def kafka_cluster(session_cluster: EmbeddedCluster) -> Iterator[EmbeddedCluster]:
    """The session's three-node cluster with every node running, before and after the test
    (one it killed, stopped or paused is started again, or resumed)."""
    _whole(session_cluster)
    yield session_cluster
    _whole(session_cluster)


def _whole(cluster: EmbeddedCluster) -> None:
    for node in cluster.nodes:
        node.resume()
    if len(cluster.running()) < cluster.size:
        cluster.start()


@pytest.fixture(scope="session")
def redis_url() -> Iterator[str]:
    """A Redis server of the tests' own (Debian's redis-server) on a free port, keeping nothing."""
    server = shutil.which("redis-server") or "/usr/bin/redis-server"
    if not os.path.exists(server):
        pytest.fail("the cache tests need redis-server (Debian: apt-get install redis-server; "
                    "`make test` installs it)")
    port = free_port()
    with tempfile.TemporaryDirectory(prefix="calcstream-redis-") as workdir:
        with open(os.path.join(workdir, "redis.log"), "wb") as log:
            proc = subprocess.Popen(
                [server, "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                 "--appendonly", "no", "--dir", workdir],
                stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        try:
            _wait_for_redis(port, proc)
            yield f"redis://127.0.0.1:{port}"
        finally:
            proc.terminate()
            proc.wait(10)


def _wait_for_redis(port: int, proc: subprocess.Popen[bytes], timeout: float = 10.0) -> None:
    client = redis.Redis(port=port, socket_connect_timeout=0.2)
    deadline = time.monotonic() + timeout
    try:
        while True:
            try:
                client.ping()
                return
            except redis.ConnectionError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"redis-server did not answer on port {port} "
                                       f"(exit code {proc.poll()})") from None
                time.sleep(0.02)
    finally:
        client.close()


@pytest.fixture
async def deployment(kafka_bootstrap: str) -> AsyncIterator[Deployment]:
    """Fresh topics (4 partitions each) and a fresh consumer group for one test."""
    suffix = unique("t")
    dep = Deployment(
        bootstrap=kafka_bootstrap,
        topics=Topics(
            f"calc.requests.{suffix}", f"calc.results.{suffix}", f"calc.dlq.{suffix}"
        ),
        group=f"workers-{suffix}",
        partitions=4,
    )
    await create_topics(kafka_bootstrap, dep.topics.all(), dep.partitions)
    yield dep


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Broker-free tests first, then the ones on the real broker.

    Integration fixtures keep servers and Kafka clients running in background threads for the
    whole session; those threads touch the global ``random`` module, which Hypothesis (rightly)
    treats as non-determinism in the property tests. Running the pure tests first keeps them
    deterministic, and gives the fast feedback first.
    """
    items.sort(key=lambda item: bool({"kafka_bootstrap", "kafka_cluster"}
                                     & set(getattr(item, "fixturenames", ()))))
