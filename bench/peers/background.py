"""background: FastAPI ``BackgroundTasks`` (the second usual recipe; it returns no result).

``GET /stats`` counts accepted and completed tasks so the bench can measure both rates;
``POST /stats/reset`` zeroes them between runs.
"""

from __future__ import annotations

import threading
import time
from typing import Any

import orjson
from fastapi import BackgroundTasks, Request, Response

from bench.peers.common import JSON, compute, new_app, parse

app = new_app("background")

_lock = threading.Lock()
_stats: dict[str, Any] = {}


def _reset() -> None:
    with _lock:
        _stats.update(accepted=0, completed=0, first_accept=None, last_complete=None)


_reset()


def _work(op: str, data: Any, args: dict[str, Any]) -> None:
    compute(op, data, args)
    with _lock:
        _stats["completed"] += 1
        _stats["last_complete"] = time.time()


@app.post("/compute", status_code=202)
async def compute_later(request: Request, tasks: BackgroundTasks) -> Response:
    """Accept now, compute after the response (in Starlette's thread pool: ``_work`` is sync)."""
    op, data, args = parse(await request.body())
    with _lock:
        _stats["accepted"] += 1
        if _stats["first_accept"] is None:
            _stats["first_accept"] = time.time()
    tasks.add_task(_work, op, data, args)
    return Response(b'{"status":"accepted"}', 202, media_type=JSON)


@app.get("/stats")
async def stats() -> Response:
    """Accepted and completed counts, first accept and last completion (UNIX seconds)."""
    with _lock:
        return Response(orjson.dumps(_stats), media_type=JSON)


@app.post("/stats/reset")
async def reset() -> Response:
    """Zero the counters."""
    _reset()
    return Response(b"{}", media_type=JSON)
