"""Fixtures of the fault scenarios: a fleet of worker processes that is always cleaned up."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.faults.harness import Fleet
from tests.kafka import Deployment

GUARANTEES = ("at_least_once", "exactly_once")


@pytest.fixture(params=GUARANTEES)
def guarantee(request: pytest.FixtureRequest) -> str:
    """Each fault scenario runs under both processing guarantees."""
    return str(request.param)


@pytest.fixture
def fleet(deployment: Deployment, guarantee: str) -> Iterator[Fleet]:
    """Worker processes of this test's deployment; all killed at teardown."""
    # A 1 s session: a dead member is noticed in 1 s and a join takes about 0.5 s.
    fleet = Fleet(deployment, {"CALCSTREAM_SESSION_TIMEOUT_MS": "1000",
                               "CALCSTREAM_HEARTBEAT_INTERVAL_MS": "250",
                               "CALCSTREAM_PROCESSING_GUARANTEE": guarantee})
    try:
        yield fleet
    finally:
        fleet.close()
