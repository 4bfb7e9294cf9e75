"""Fixtures of the contract tests: fresh topics on the session broker with a worker serving them."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.kafka import Deployment
from tests.stack import new_deployment, worker_process


@pytest.fixture(scope="module")
def served(kafka_bootstrap: str, tmp_path_factory: pytest.TempPathFactory
           ) -> Iterator[Deployment]:
    """Fresh topics and a ``python -m consumer`` worker on them, for one test module."""
    dep = new_deployment(kafka_bootstrap)
    with worker_process(dep, tmp_path_factory.mktemp("worker") / "worker.log"):
        yield dep
