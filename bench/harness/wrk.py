"""Closed-loop HTTP load with Debian's ``wrk`` and ``check.lua``: every answer is checked."""

from __future__ import annotations

import asyncio
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from bench.harness.payloads import BodyPool

SCRIPT = Path(__file__).with_name("check.lua")
MARKER = "BENCHJSON "


@dataclass(frozen=True)
class WrkResult:
    """What one wrk run counted."""

    requests: int
    seconds: float
    ok: int
    bad: int
    wrong_status: int
    errors: dict[str, int]
    latency_ms: dict[str, float]
    statuses: dict[str, int]

    @property
    def ok_per_s(self) -> float:
        """Correct answers per second."""
        return self.ok / self.seconds if self.seconds else 0.0

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready fields."""
        return {"requests": self.requests, "seconds": self.seconds, "ok": self.ok,
                "bad": self.bad, "wrong_status": self.wrong_status, "errors": self.errors,
                "latency_ms": self.latency_ms, "statuses": self.statuses,
                "ok_per_s": self.ok_per_s}


def available() -> bool:
    """``wrk`` is on PATH."""
    return shutil.which("wrk") is not None


def write_pool(pool: BodyPool, directory: Path) -> Path:
    """Lay the pool out as check.lua reads it."""
    directory.mkdir(parents=True, exist_ok=True)
    for i, body in enumerate(pool.bodies):
        (directory / f"body-{i}").write_bytes(body)
        if pool.prefix[i]:
            (directory / f"prefix-{i}").write_bytes(pool.prefix[i])
    (directory / "expected").write_text("".join(f"{e!r}\n" for e in pool.expected))
    (directory / "headers").write_text("".join(f"{k}\n{v}\n" for k, v in pool.headers.items()))
    return directory


async def run(url: str, pool: BodyPool, seconds: float, connections: int, mode: str,
              status: int, threads: int = 1) -> WrkResult:
    """``wrk`` for ``seconds`` with ``connections`` open; ``mode`` is status, number or prefix."""
    with tempfile.TemporaryDirectory(prefix="bench-wrk-") as tmp:
        directory = write_pool(pool, Path(tmp))
        argv = ["wrk", "-t", str(threads), "-c", str(connections), "-d", f"{seconds:g}s",
                "--timeout", "30s", "-s", str(SCRIPT), url, "--", str(directory), mode,
                str(status)]
        proc = await asyncio.create_subprocess_exec(*argv, stdout=asyncio.subprocess.PIPE,
                                                    stderr=asyncio.subprocess.STDOUT)
        try:
            out, _ = await asyncio.wait_for(proc.communicate(), seconds + 60)
        except TimeoutError:
            proc.kill()
            await proc.wait()
            raise
    text = out.decode(errors="replace")
    line = next((ln for ln in text.splitlines() if ln.startswith(MARKER)), None)
    if line is None:
        raise RuntimeError(f"wrk printed no summary:\n{text}")
    doc = orjson.loads(line[len(MARKER):])
    return WrkResult(doc["requests"], doc["duration_us"] / 1e6, doc["ok"], doc["bad"],
                     doc["wrong_status"], doc["errors"],
                     {k: v / 1000.0 for k, v in doc["latency_us"].items()},
                     doc.get("statuses", {}))
