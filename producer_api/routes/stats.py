"""``GET /v1/stats``: the live figures the dashboard polls (see ``producer_api.overview``)."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response

from producer_api.models import Stats
from producer_api.overview import Overview
from producer_api.responses import OrjsonResponse

router = APIRouter(tags=["operations"])


@router.get(
    "/v1/stats", summary="Live figures", response_model=Stats,
    description="Throughput, end-to-end latency percentiles, event-loop lag, result-store size "
    "and WebSocket figures of this replica over a sliding window of about 5 s, plus each "
    "worker's figures scraped from the URLs in worker_metrics_urls (at most once a second).",
)
async def stats(request: Request) -> Response:
    """Figures for the dashboard; answers before start-up too, with what it has."""
    overview: Overview = request.app.state.overview
    return OrjsonResponse(await overview.document(request.app.state.services))
