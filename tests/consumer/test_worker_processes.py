"""Workers as real processes: graceful SIGTERM drain, and two workers sharing one group."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from collections.abc import Iterator

import orjson
import pytest

from tests.kafka import Deployment, TopicReader, produce, request_json, results_by_id


class WorkerProcess:
    """``python -m consumer`` for one deployment."""

    def __init__(self, deployment: Deployment, name: str, **env: str) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "consumer"],
            env={**os.environ, **deployment.env(CALCSTREAM_WORKER_ID=name, **env)},
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
        )

    async def terminate(self, timeout: float = 30) -> int:
        self.proc.send_signal(signal.SIGTERM)
        return await asyncio.to_thread(self.proc.wait, timeout)

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()
        if self.proc.stderr:
            self.proc.stderr.close()


@pytest.fixture
def workers(deployment: Deployment) -> Iterator[list[WorkerProcess]]:
    started: list[WorkerProcess] = []
    yield started
    for w in started:
        w.kill()


async def test_sigterm_drains_with_no_loss_and_no_duplicates(
    deployment: Deployment, workers: list[WorkerProcess]
) -> None:
    n = 6000
    requests = [(f"r{i}".encode(), request_json(f"r{i}", "sum_of_squares", [float(i)] * 100))
                for i in range(n)]
    # Small batches, one in flight: the first worker is still busy when SIGTERM lands.
    first = WorkerProcess(deployment, "first", CALCSTREAM_MAX_BATCH_SIZE="20",
                          CALCSTREAM_MAX_IN_FLIGHT="1")
    workers.append(first)
    async with TopicReader(deployment.bootstrap, deployment.topics.results) as reader:
        await produce(deployment.bootstrap, deployment.topics.requests, requests[: n // 2])
        await reader.read_count(500, timeout=60)
        assert await first.terminate() == 0
        assert first.proc.stderr is not None
        log = first.proc.stderr.read().decode()
        assert "shut down gracefully" in log, log
        assert len(reader.records) < n // 2, "the first worker finished before SIGTERM"
        await produce(deployment.bootstrap, deployment.topics.requests, requests[n // 2 :])
        second = WorkerProcess(deployment, "second")
        workers.append(second)
        await reader.read_count(n, timeout=60)
        results = results_by_id(await reader.read_more(quiet=1.0))
        assert await second.terminate() == 0
    assert len(results) == n, f"lost {n - len(results)}"
    duplicates = {k: v for k, v in results.items() if len(v) > 1}
    assert not duplicates, f"{len(duplicates)} duplicates after a clean shutdown"
    assert {docs[0]["worker"] for docs in results.values()} == {"first", "second"}


async def test_two_workers_share_partitions_and_answer_each_request_once(
    deployment: Deployment, workers: list[WorkerProcess]
) -> None:
    workers += [WorkerProcess(deployment, "w1"), WorkerProcess(deployment, "w2")]
    n = 0
    async with TopicReader(deployment.bootstrap, deployment.topics.results) as reader:
        # Keep the load coming until both members have answered something.
        async with asyncio.timeout(60):
            while {orjson.loads(r.value)["worker"] for r in reader.records} != {"w1", "w2"}:
                await produce(deployment.bootstrap, deployment.topics.requests, [
                    (f"r{i}".encode(), request_json(f"r{i}", "sum", [float(i), 1.0]))
                    for i in range(n, n + 200)
                ])
                n += 200
                await reader.read_count(n, timeout=30)
        await reader.read_count(n, timeout=60)
        results = results_by_id(await reader.read_more(quiet=1.0))
        for w in workers:
            assert await w.terminate() == 0
    assert len(results) == n
    assert all(len(v) == 1 for v in results.values())
    assert all(v[0]["result"] == float(k[1:]) + 1 for k, v in results.items())
    assert {v[0]["worker"] for v in results.values()} == {"w1", "w2"}
