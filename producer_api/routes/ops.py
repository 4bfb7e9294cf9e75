"""``/v1/ops``: what can be computed, and the arguments each op takes."""

from __future__ import annotations

from functools import cache

import orjson
from fastapi import APIRouter, Response

from producer_api.models import OpInfo
from producer_api.responses import OrjsonResponse
from schemas import ops

router = APIRouter(prefix="/v1", tags=["ops"])


@cache
def _catalogue() -> bytes:
    return orjson.dumps(ops.catalogue())


@router.get("/ops", summary="The registered ops", response_model=list[OpInfo],
            description="Each op's name, what it computes from `data`, and the JSON Schema of "
            "its `args`. A request naming any other op is a 422.")
async def list_ops() -> Response:
    """Every registered op, sorted by name."""
    return OrjsonResponse(_catalogue())
