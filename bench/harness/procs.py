"""Child processes of a bench run: start, wait until they answer, stop (SIGTERM, then SIGKILL)."""

from __future__ import annotations

import asyncio
import logging
import os
import resource
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from types import TracebackType

from core import tether
from core.net import free_port, port_open

logger = logging.getLogger(__name__)

HOST = "127.0.0.1"
ROOT = Path(__file__).resolve().parents[2]
"""The repository root: children import ``bench`` (not installed) and the product from here."""


def exit_on_sigterm() -> None:
    """Make SIGTERM end this process like Ctrl-C, so that its clean-up runs (``finally``
    blocks stop the stacks and remove their directories; Python's default for SIGTERM runs
    none): a tool stopped by ``timeout`` or ``kill`` leaves nothing behind. Servers still up
    after that are stopped by their tether (``core.tether``), as after a SIGKILL. Only where
    SIGTERM has no handler yet, and only from the main thread."""
    if (threading.current_thread() is threading.main_thread()
            and signal.getsignal(signal.SIGTERM) is signal.SIG_DFL):
        signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))


class Child:
    """One subprocess with its log file; ``stop()`` is safe to call twice."""

    def __init__(self, name: str, argv: list[str], env: dict[str, str] | None = None,
                 log_dir: Path | None = None) -> None:
        self.name = name
        self.argv = argv
        self.env = {**os.environ, "PYTHONPATH": str(ROOT), **(env or {})}
        self.log_path = (log_dir / f"{name}.log") if log_dir else None
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int:
        """Process id (the child must be started)."""
        if self.proc is None:
            raise RuntimeError(f"{self.name} is not started")
        return self.proc.pid

    def start(self) -> Child:
        """Spawn the process in its own session (so a stray signal to ours does not reach it),
        tethered to ours (a killed run leaves nothing running)."""
        exit_on_sigterm()
        out = open(self.log_path, "ab") if self.log_path else subprocess.DEVNULL  # noqa: SIM115
        try:
            self.proc = subprocess.Popen(self.argv, env=self.env, cwd=ROOT, stdout=out,
                                         stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                         start_new_session=True)
        finally:
            if out is not subprocess.DEVNULL:
                out.close()  # type: ignore[union-attr]
        tether.tether(self.proc)
        logger.debug("started %s (pid %d): %s", self.name, self.proc.pid, " ".join(self.argv))
        return self

    def alive(self) -> bool:
        """The process is running."""
        return self.proc is not None and self.proc.poll() is None

    def wait_port(self, port: int, timeout: float = 30.0) -> None:
        """Return once ``port`` accepts connections; raise if the child dies or time runs out."""
        deadline = time.monotonic() + timeout
        while not port_open(HOST, port):
            if not self.alive():
                raise RuntimeError(f"{self.name} exited ({self._tail()})")
            if time.monotonic() > deadline:
                raise TimeoutError(f"{self.name} did not listen on {port} in {timeout}s")
            time.sleep(0.05)

    def stop(self, timeout: float = 15.0) -> None:
        """SIGTERM, wait, then SIGKILL."""
        proc, self.proc = self.proc, None
        if proc is None:
            return
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                logger.warning("%s ignored SIGTERM for %.0fs; killing it", self.name, timeout)
                proc.kill()
                proc.wait()
        tether.release(proc)

    def _tail(self) -> str:
        if self.log_path is None or not self.log_path.exists():
            return "no log"
        lines = self.log_path.read_text(errors="replace").splitlines()[-5:]
        return " | ".join(lines)

    def __enter__(self) -> Child:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()


def redis_server(log_dir: Path | None = None) -> tuple[Child, str]:
    """A private redis-server (Debian's) on a free port, keeping nothing; started, with its URL."""
    port = free_port()
    child = Child("redis", ["redis-server", "--port", str(port), "--bind", HOST, "--save", "",
                            "--appendonly", "no"], log_dir=log_dir).start()
    child.wait_port(port)
    return child, f"redis://{HOST}:{port}/0"


def uvicorn_child(name: str, app: str, port: int, log_dir: Path | None = None,
                  env: dict[str, str] | None = None) -> Child:
    """A single-process uvicorn serving ``app`` the way the API serves (uvloop, httptools)."""
    argv = [sys.executable, "-m", "uvicorn", app, "--host", HOST, "--port", str(port),
            "--loop", "uvloop", "--http", "httptools", "--no-access-log",
            "--log-level", "warning", "--timeout-graceful-shutdown", "3"]
    return Child(name, argv, env, log_dir)


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far, from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def tree_cpu_seconds(pid: int) -> float:
    """``cpu_seconds`` of a process and every live descendant (a prefork pool's children)."""
    parents: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                parents[int(entry.name)] = int(
                    (entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
    tree, frontier = {pid}, [pid]
    while frontier:
        parent = frontier.pop()
        for child, ppid in parents.items():
            if ppid == parent and child not in tree:
                tree.add(child)
                frontier.append(child)
    total = 0.0
    for member in tree:
        try:
            total += cpu_seconds(member)
        except OSError:
            continue
    return total


async def until_quiet(busy_seconds: Callable[[], float], busy: float, window_s: float,
                      limit_s: float) -> float:
    """Wait until ``busy_seconds()`` (a CPU-time counter) grows by less than ``busy`` of a core
    over ``window_s`` (at most ``limit_s``); the seconds it took."""
    started = time.monotonic()
    last = busy_seconds()
    while time.monotonic() - started < limit_s:
        await asyncio.sleep(window_s)
        now = busy_seconds()
        if now - last < busy * window_s:
            break
        last = now
    return time.monotonic() - started


async def until_idle(pids: list[int], busy: float = 0.05, window_s: float = 1.0,
                     limit_s: float = 120.0) -> float:
    """Wait until these processes and their descendants use less than ``busy`` of a core
    over ``window_s`` (at most ``limit_s``); the seconds it took."""
    return await until_quiet(lambda: sum(tree_cpu_seconds(pid) for pid in pids), busy,
                             window_s, limit_s)


def machine_busy_seconds() -> float:
    """CPU seconds every core has spent on anything but idling, since boot (/proc/stat)."""
    fields = Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]
    ticks = [int(f) for f in fields]
    idle = ticks[3] + (ticks[4] if len(ticks) > 4 else 0)  # idle and iowait
    return (sum(ticks[:8]) - idle) / os.sysconf("SC_CLK_TCK")


async def until_machine_idle(busy: float = 0.15, window_s: float = 1.0,
                             limit_s: float = 60.0) -> float:
    """Wait until the whole machine (the kernel's own threads too) uses less than ``busy``
    of one core over ``window_s`` (at most ``limit_s``); the seconds it took."""
    return await until_quiet(machine_busy_seconds, busy, window_s, limit_s)


class CpuMeter:
    """CPU seconds each process used between ``start()`` and ``per_item(n)``.

    With ``reaped_children``, also the children this process waited for meanwhile, as
    ``wrk`` (the load generator runs as one; with ``--profile``, py-spy is counted there too).
    """

    def __init__(self, pids: dict[str, int], reaped_children: bool = False) -> None:
        self.pids = pids
        self.reaped_children = reaped_children
        self.before: dict[str, float] = {}

    def start(self) -> CpuMeter:
        """Take the starting readings."""
        self.before = {name: cpu_seconds(pid) for name, pid in self.pids.items()}
        if self.reaped_children:
            self.before["wrk"] = _children_seconds()
        return self

    def per_item(self, items: int) -> dict[str, float]:
        """µs of CPU per item for each process (a process gone meanwhile is left out)."""
        used = {}
        for name, pid in self.pids.items():
            try:
                used[name] = (cpu_seconds(pid) - self.before[name]) / max(items, 1) * 1e6
            except (OSError, KeyError):
                continue
        if self.reaped_children:
            used["wrk"] = (_children_seconds() - self.before["wrk"]) / max(items, 1) * 1e6
        return used


def _children_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def rss_bytes(pid: int) -> tuple[int, int]:
    """(current RSS, peak RSS) of a process, in bytes, from /proc."""
    rss = hwm = 0
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            rss = int(line.split()[1]) * 1024
        elif line.startswith("VmHWM:"):
            hwm = int(line.split()[1]) * 1024
    return rss, hwm
