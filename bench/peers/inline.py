"""inline: an ``async def`` endpoint that calls NumPy directly (the problem case)."""

from __future__ import annotations

from fastapi import Request, Response

from bench.peers.common import compute, new_app, parse, result_response

app = new_app("inline")


@app.post("/compute")
async def compute_inline(request: Request) -> Response:
    """Parse and compute on the event loop."""
    op, data, args = parse(await request.body())
    return result_response(compute(op, data, args))
