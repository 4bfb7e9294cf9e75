"""Real processes for tests that drive calcstream from outside: fresh topics, a worker process."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

from schemas.topics import Topics
from tests.kafka import Deployment, create_topics, unique

CALCSTREAM = str(Path(sys.executable).with_name("calcstream"))


def new_deployment(bootstrap: str, partitions: int = 4) -> Deployment:
    """Fresh topics and group on the session broker (for sync fixtures and tests)."""
    suffix = unique("c")
    dep = Deployment(
        bootstrap=bootstrap,
        topics=Topics(f"calc.requests.{suffix}", f"calc.results.{suffix}",
                      f"calc.dlq.{suffix}"),
        group=f"workers-{suffix}",
        partitions=partitions,
    )
    asyncio.run(create_topics(bootstrap, dep.topics.all(), partitions))
    return dep


def environment(dep: Deployment) -> dict[str, str]:
    """This process's environment with the deployment's CALCSTREAM_* variables."""
    return {**os.environ, **dep.env()}


@contextlib.contextmanager
def worker_process(dep: Deployment, log: Path) -> Iterator[subprocess.Popen[bytes]]:
    """``python -m consumer`` for the deployment; SIGTERM (drain and exit) when the block ends."""
    with log.open("wb") as out:
        proc = subprocess.Popen([sys.executable, "-m", "consumer"], env=environment(dep),
                                stdout=out, stderr=subprocess.STDOUT)
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def calcstream(*args: str, dep: Deployment | None = None, timeout: float = 60,
               env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """Run ``.venv/bin/calcstream ARGS`` to completion."""
    return subprocess.run([CALCSTREAM, *args], capture_output=True, text=True, timeout=timeout,
                          env=env if env is not None else
                          environment(dep) if dep is not None else None)
