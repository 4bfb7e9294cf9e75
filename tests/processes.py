"""Real processes for tests: a worker (``python -m consumer``) that can be signalled and watched.

The process logs to a file rather than a pipe: a pipe nobody reads fills up and blocks the
worker mid-test. Tests wait on what the log or the metrics endpoint says, with timeouts.
The log files are removed when a process is closed, unless ``CALCSTREAM_KEEP_TEST_LOGS`` is set
(then they stay in the temporary directory as ``calcstream-<name>-*.log``, to read after a run).
"""

from __future__ import annotations

import asyncio
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from pathlib import Path

from tests.kafka import Deployment

_METRICS_URL = re.compile(r"metrics on (http://\S+/metrics)")


def ended(pid: int) -> bool:
    """The process is gone, or a zombie waiting to be reaped: nothing here can wait for the
    exit of a process it did not start."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0] == "Z"
    except (FileNotFoundError, ProcessLookupError):  # gone before the open, or before the read
        return True


class LoggedProcess:
    """A subprocess whose stderr and stdout go to a temporary log file."""

    def __init__(self, argv: Sequence[str], env: dict[str, str], name: str) -> None:
        self.name = name
        fd, path = tempfile.mkstemp(prefix=f"calcstream-{name}-", suffix=".log")
        self.log_path = Path(path)
        with os.fdopen(fd, "wb") as out:
            self.proc = subprocess.Popen(list(argv), env={**os.environ, **env},
                                         stdout=out, stderr=subprocess.STDOUT,
                                         stdin=subprocess.DEVNULL)

    @property
    def pid(self) -> int:
        """The process id."""
        return self.proc.pid

    def alive(self) -> bool:
        """The process has not exited."""
        return self.proc.poll() is None

    def log(self) -> str:
        """Everything the process wrote so far."""
        return self.log_path.read_text(errors="replace")

    def mark(self) -> int:
        """A position in the log, for ``wait_for_log(since=...)``."""
        return len(self.log())

    async def wait_for_log(self, pattern: str, timeout: float = 30.0,
                           since: int = 0) -> re.Match[str]:
        """Wait until a line matching ``pattern`` appears (after ``since``); fail early if the
        process exits."""
        regex = re.compile(pattern)
        deadline = time.monotonic() + timeout
        while True:
            found = regex.search(self.log(), since)
            if found:
                return found
            if not self.alive():
                raise AssertionError(f"{self.name} exited ({self.proc.returncode}) before "
                                     f"logging {pattern!r}:\n{self.log()[-3000:]}")
            if time.monotonic() > deadline:
                raise TimeoutError(f"{self.name} did not log {pattern!r} in {timeout}s:\n"
                                   f"{self.log()[-3000:]}")
            await asyncio.sleep(0.05)  # noqa: ASYNC110 - polling a log file, no event exists

    async def terminate(self, timeout: float = 30) -> int:
        """SIGTERM, then wait for the exit code."""
        self.proc.send_signal(signal.SIGTERM)
        return await asyncio.to_thread(self.proc.wait, timeout)

    def kill(self) -> None:
        """SIGKILL (a crash) and reap; safe to call twice."""
        if self.alive():
            self.proc.kill()
        self.proc.wait()

    def pause(self) -> None:
        """SIGSTOP: the process freezes, sockets stay open, heartbeats stop."""
        self.proc.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        """SIGCONT after ``pause``."""
        self.proc.send_signal(signal.SIGCONT)

    def close(self) -> None:
        """Kill if still running and remove the log file."""
        if self.alive():
            self.proc.send_signal(signal.SIGCONT)
        self.kill()
        if not os.environ.get("CALCSTREAM_KEEP_TEST_LOGS"):
            self.log_path.unlink(missing_ok=True)


class WorkerProcess(LoggedProcess):
    """``python -m consumer`` for one deployment (metrics on a free port)."""

    def __init__(self, deployment: Deployment, name: str, argv: Sequence[str] = (),
                 **env: str) -> None:
        super().__init__(argv or [sys.executable, "-m", "consumer"],
                         deployment.env(CALCSTREAM_WORKER_ID=name, **env), name)

    async def wait_for_assignment(self, partitions: int, timeout: float = 30.0,
                                  since: int = 0) -> None:
        """Wait until it logs an assignment of exactly ``partitions`` partitions."""
        tuples = r"\('[^']*', \d+\)"
        listed = ", ".join([tuples] * partitions)
        await self.wait_for_log(rf"partitions assigned \[{listed}\]", timeout, since)

    async def metrics_url(self, timeout: float = 30.0) -> str:
        """The URL of its /metrics endpoint, from its start-up log line."""
        return (await self.wait_for_log(_METRICS_URL.pattern, timeout)).group(1)

    async def metrics(self) -> dict[str, float]:
        """Its Prometheus samples, ``name{labels}`` → value."""
        url = await self.metrics_url()
        text = await asyncio.to_thread(_get, url)
        samples: dict[str, float] = {}
        for line in text.splitlines():
            if line and not line.startswith("#"):
                name, _, value = line.rpartition(" ")
                samples[name] = float(value)
        return samples

    async def metric(self, prefix: str) -> float:
        """Sum of the samples whose name starts with ``prefix``."""
        return sum(v for k, v in (await self.metrics()).items() if k.startswith(prefix))

    async def wait_for_metric(self, prefix: str, at_least: float, timeout: float = 30.0) -> float:
        """Poll ``metric(prefix)`` until it reaches ``at_least``; return its value."""
        async with asyncio.timeout(timeout):
            while (value := await self.metric(prefix)) < at_least:  # noqa: ASYNC110 - polling
                await asyncio.sleep(0.1)                             # another process
        return value


def _get(url: str) -> str:
    with urllib.request.urlopen(url, timeout=5) as response:
        return str(response.read().decode())


class ApiProcess(LoggedProcess):
    """``python -m producer_api`` (or another module serving it) on a free port."""

    def __init__(self, deployment: Deployment, name: str, port: int,
                 module: str = "producer_api", **env: str) -> None:
        super().__init__([sys.executable, "-m", module, "--port", str(port)],
                         deployment.env(**env), name)
        self.base_url = f"http://127.0.0.1:{port}"

    async def ready(self, timeout: float = 60.0) -> None:
        """Wait until ``GET /readyz`` answers 200."""
        deadline = time.monotonic() + timeout
        last = b""
        while True:
            try:
                status, last = await asyncio.to_thread(_answer, f"{self.base_url}/readyz")
                if status == 200:
                    return
            except OSError:
                pass
            if not self.alive():
                raise AssertionError(f"{self.name} exited ({self.proc.returncode}):\n"
                                     f"{self.log()[-3000:]}")
            if time.monotonic() > deadline:
                # The start-up line of settings is long and says nothing about why: left out.
                lines = [line for line in self.log().splitlines() if "starting with {" not in line]
                raise TimeoutError(f"{self.name} not ready in {timeout}s; /readyz said "
                                   f"{last.decode(errors='replace')}:\n"
                                   + "\n".join(lines)[-3000:])
            await asyncio.sleep(0.1)


def _answer(url: str) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return int(response.status), response.read()
    except urllib.error.HTTPError as exc:
        return int(exc.code), exc.read()

