"""celery via FastAPI: ``delay()`` then a blocking ``get()``, in Starlette's thread pool.

That is what a ``def`` endpoint does (40 threads), so 64 clients share 40 blocking waits; the
body is read on the loop first because a ``def`` endpoint cannot read a raw body.
"""

from __future__ import annotations

from fastapi import Request, Response
from starlette.concurrency import run_in_threadpool

from bench.peers.celery_app import compute
from bench.peers.common import new_app, parse, result_response

app = new_app("celery")


@app.post("/compute")
async def compute_celery(request: Request) -> Response:
    """Queue the task and wait for its result without blocking the loop."""
    return await run_in_threadpool(_submit_and_wait, await request.body())


def _submit_and_wait(body: bytes) -> Response:
    op, data, args = parse(body)
    return result_response(compute.delay(op, data, args).get(timeout=30))
