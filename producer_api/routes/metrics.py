"""``GET /metrics``: Prometheus text format (see ``producer_api.metrics`` for the families)."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response
from prometheus_client import generate_latest

from core.metrics import CONTENT_TYPE

router = APIRouter(tags=["operations"])


@router.get(
    "/metrics", summary="Prometheus metrics",
    description="Requests accepted and rejected (by way in, status and error code), results "
    "by status, end-to-end, publish and event-loop-lag histograms, WebSocket connections and "
    "drops, result-store size and waiters, and the process' CPU and memory.",
    response_class=Response,
    responses={200: {"content": {"text/plain": {"schema": {"type": "string"}}},
                     "description": "Prometheus text exposition format 0.0.4."}},
)
async def metrics(request: Request) -> Response:
    """Every metric of this replica, rendered now."""
    return Response(generate_latest(request.app.state.registry), media_type=CONTENT_TYPE)
