"""to_thread: ``await asyncio.to_thread(...)`` per request (the first usual recipe)."""

from __future__ import annotations

import asyncio

from fastapi import Request, Response

from bench.peers.common import compute, new_app, parse, result_response

app = new_app("to_thread")


@app.post("/compute")
async def compute_to_thread(request: Request) -> Response:
    """Parse on the loop, compute in the default thread pool."""
    op, data, args = parse(await request.body())
    return result_response(await asyncio.to_thread(compute, op, data, args))
