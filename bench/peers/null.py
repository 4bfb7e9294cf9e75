"""null: reads the body and answers 202, nothing else; the load generator's ceiling."""

from __future__ import annotations

from fastapi import Request, Response

from bench.peers.common import JSON, new_app

app = new_app("null")


@app.post("/compute", status_code=202)
async def accept(request: Request) -> Response:
    """Read the body, answer 202."""
    await request.body()
    return Response(b'{"id":"x","status":"queued"}', 202, media_type=JSON)
