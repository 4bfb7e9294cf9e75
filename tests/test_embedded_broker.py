"""The embedded broker's runtime threads: one by default, Tansu's own choice on request."""

from __future__ import annotations

from pathlib import Path

import pytest

from calcstream.broker import EmbeddedBroker, free_port


def _runtime_threads(pid: int) -> int:
    tasks = Path(f"/proc/{pid}/task")
    names = [(task / "comm").read_text().strip() for task in tasks.iterdir()]
    return sum(name.startswith("tokio-rt") for name in names)


@pytest.mark.parametrize(("threads", "expected"), [(1, 1), (2, 2)])
def test_the_broker_runs_the_runtime_threads_it_was_given(threads: int, expected: int) -> None:
    with EmbeddedBroker(free_port(), threads=threads) as broker:
        assert broker.pid is not None
        assert _runtime_threads(broker.pid) == expected


def test_one_runtime_thread_is_the_default() -> None:
    with EmbeddedBroker(free_port()) as broker:
        assert broker.pid is not None
        assert _runtime_threads(broker.pid) == 1
