"""Fixtures of the fault scenarios: a fleet of worker processes that is always cleaned up, on
the session broker or on the three-node cluster."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import pytest

from core.kafka import EmbeddedCluster
from schemas.topics import Topics
from tests.faults.harness import Fleet
from tests.kafka import Deployment, create_topics, unique

# A 1 s session: a dead member is noticed in 1 s and a join takes about 0.5 s.
FLEET_ENV = {"CALCSTREAM_SESSION_TIMEOUT_MS": "1000", "CALCSTREAM_HEARTBEAT_INTERVAL_MS": "250"}

GUARANTEES = ("at_least_once", "exactly_once")


@pytest.fixture(params=GUARANTEES)
def guarantee(request: pytest.FixtureRequest) -> str:
    """Each fault scenario runs under both processing guarantees."""
    return str(request.param)


@pytest.fixture
def fleet(deployment: Deployment, guarantee: str) -> Iterator[Fleet]:
    """Worker processes of this test's deployment; all killed at teardown."""
    fleet = Fleet(deployment, {**FLEET_ENV, "CALCSTREAM_PROCESSING_GUARANTEE": guarantee})
    try:
        yield fleet
    finally:
        fleet.close()


@pytest.fixture
async def cluster_deployment(kafka_cluster: EmbeddedCluster) -> AsyncIterator[Deployment]:
    """Fresh topics on the three-node cluster, replicated three times (4 partitions each)."""
    suffix = unique("cl")
    dep = Deployment(kafka_cluster.bootstrap_servers,
                     Topics(f"calc.requests.{suffix}", f"calc.results.{suffix}",
                            f"calc.dlq.{suffix}"), f"workers-{suffix}", 4, replication=3)
    await create_topics(dep.bootstrap, dep.topics.all(), dep.partitions, dep.replication)
    yield dep


@pytest.fixture
def cluster_fleet(cluster_deployment: Deployment) -> Iterator[Fleet]:
    """Worker processes on the cluster's fresh topics, exactly_once; all killed at teardown.

    Each node restart takes tens of seconds here, so ``make test`` runs the cluster scenarios
    under the stronger guarantee only; ``make chaos`` runs them under both.
    """
    fleet = Fleet(cluster_deployment,
                  {**FLEET_ENV, "CALCSTREAM_PROCESSING_GUARANTEE": "exactly_once"})
    try:
        yield fleet
    finally:
        fleet.close()
