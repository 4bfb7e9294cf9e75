"""Client fixtures: one real worker and one real API (uvicorn) on the session broker."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import pytest

from calcstream.client import Client
from tests.kafka import Deployment
from tests.producer_api.conftest import ApiStack, api_settings, new_deployment


@pytest.fixture(scope="session")
def client_deployment(kafka_bootstrap: str) -> Deployment:
    """Fresh topics for the client tests' stack."""
    return new_deployment(kafka_bootstrap)


@pytest.fixture(scope="session")
def stack(client_deployment: Deployment) -> Iterator[ApiStack]:
    """An API and a worker shared by the client tests (each test uses its own ids)."""
    with ApiStack(api_settings(client_deployment),
                  client_deployment.worker_settings()) as api:
        yield api


@pytest.fixture
async def client(stack: ApiStack) -> AsyncIterator[Client]:
    """A started client of the shared stack."""
    async with Client(stack.base_url) as started:
        yield started

