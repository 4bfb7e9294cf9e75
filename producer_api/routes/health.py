"""``/healthz`` (the process answers) and ``/readyz`` (it can take traffic)."""

from __future__ import annotations

from fastapi import APIRouter, Response

from producer_api.deps import ServicesDep
from producer_api.models import ErrorBody, Health, Readiness
from producer_api.responses import OrjsonResponse

router = APIRouter(tags=["health"])


@router.get("/healthz", summary="Liveness", response_model=Health)
async def healthz() -> Response:
    """200 while the process serves requests."""
    return OrjsonResponse(b'{"status":"ok"}')


@router.get("/readyz", summary="Readiness", response_model=Readiness,
            description="200 when the broker answers and the result reader has caught up with "
            "the reply topic; 503 otherwise (the same flags, or an error before start-up). A "
            "Kafka client whose metadata task ended (it would never recover) clears its flag.",
            responses={503: {"model": Readiness | ErrorBody, "description": "Not ready."}})
async def readyz(services: ServicesDep) -> Response:
    """Broker reachable and results caught up."""
    broker = await services.publisher.reachable()
    caught_up = services.reader.caught_up.is_set() and services.reader.running
    ready = broker and caught_up
    return OrjsonResponse({
        "status": "ready" if ready else "not_ready",
        "broker": broker,
        "results_caught_up": caught_up,
        "results_remembered": len(services.store),
        "loop_lag_ms": services.loop_lag.summary(),
    }, 200 if ready else 503)
