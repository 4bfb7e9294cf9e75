"""One deployment with a real worker process, shared by the CLI tests (ids keep them apart)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.kafka import Deployment
from tests.stack import new_deployment, worker_process


@pytest.fixture(scope="session")
def stack(kafka_bootstrap: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Deployment]:
    """Fresh topics and a ``python -m consumer`` serving them for the whole session."""
    dep = new_deployment(kafka_bootstrap)
    with worker_process(dep, tmp_path_factory.mktemp("worker") / "worker.log"):
        yield dep


@pytest.fixture
def idle(kafka_bootstrap: str) -> Deployment:
    """Fresh topics that no worker serves: requests stay unanswered."""
    return new_deployment(kafka_bootstrap)
