"""Fixtures of the fault scenarios: a fleet of worker processes that is always cleaned up."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.faults.harness import Fleet
from tests.kafka import Deployment


@pytest.fixture
def fleet(deployment: Deployment) -> Iterator[Fleet]:
    """Worker processes of this test's deployment; all killed at teardown."""
    # A 1 s session: a dead member is noticed in 1 s and a join takes about 0.5 s.
    fleet = Fleet(deployment, {"CALCSTREAM_SESSION_TIMEOUT_MS": "1000",
                               "CALCSTREAM_HEARTBEAT_INTERVAL_MS": "250"})
    try:
        yield fleet
    finally:
        fleet.close()
