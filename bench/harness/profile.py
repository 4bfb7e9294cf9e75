"""``--profile``: py-spy samples of the API and the worker while a calcstream workload runs.

Raw py-spy output is kept beside the report (``profiles/*.txt``, one line per stack with its
sample count); the report lists each process's hottest frames. Idle samples (a thread waiting
in ``select``/``epoll`` or on a thread-pool queue) are left out of the shares.
"""

from __future__ import annotations

import asyncio
import shutil
import sys
from collections import Counter
from pathlib import Path

IDLE = ("select (selectors.py", "epoll_wait", "Condition.wait", "_worker (concurrent/futures",
        "_worker (thread.py", "Runner.run (asyncio/runners.py", "run_forever (")


def py_spy() -> str | None:
    """The py-spy executable (the bench extra installs it next to this Python)."""
    beside = Path(sys.executable).with_name("py-spy")
    return str(beside) if beside.exists() else shutil.which("py-spy")


async def record(pids: dict[str, int], seconds: float, out_dir: Path,
                 tag: str) -> dict[str, Path]:
    """Sample each pid at 100 Hz for ``seconds``; raw files by process name."""
    exe = py_spy()
    if exe is None:
        return {}
    await asyncio.to_thread(out_dir.mkdir, parents=True, exist_ok=True)
    procs, paths = [], {}
    for name, pid in pids.items():
        path = out_dir / f"{tag}-{name}.txt"
        procs.append(await asyncio.create_subprocess_exec(
            exe, "record", "-p", str(pid), "-d", str(max(1, int(seconds))), "-r", "100",
            "-f", "raw", "-o", str(path), stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.DEVNULL))
        paths[name] = path
    await asyncio.gather(*(asyncio.wait_for(p.wait(), seconds + 30) for p in procs))
    return {name: path for name, path in paths.items() if path.exists()}


def _frame(raw: str) -> str:
    name, _, where = raw.partition(" (")
    return f"{name} ({where.rsplit('/', 1)[-1]}" if where else name


def hottest(path: Path, top: int = 8) -> list[tuple[float, str]]:
    """(share of busy samples, frame) for the frames most often on top of a busy stack."""
    counts: Counter[str] = Counter()
    busy = 0
    for line in path.read_text(errors="replace").splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        leaf = stack.rsplit(";", 1)[-1]
        if any(marker in leaf for marker in IDLE):
            continue
        busy += int(count)
        counts[_frame(leaf)] += int(count)
    return [(n / busy, frame) for frame, n in counts.most_common(top)] if busy else []
