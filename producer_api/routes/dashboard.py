"""``GET /dashboard``: a live page fed by the WebSocket and ``/v1/stats``; ``/`` leads to it.

The page is three static files in ``producer_api/static`` (HTML, plain JS, CSS): no build
step, nothing fetched from outside the machine. They are read once, at import.
"""

from __future__ import annotations

from importlib import resources

from fastapi import APIRouter, Response
from fastapi.responses import RedirectResponse

from producer_api.errors import NotFound

router = APIRouter(include_in_schema=False)

_TYPES = {".html": "text/html; charset=utf-8", ".js": "text/javascript; charset=utf-8",
          ".css": "text/css; charset=utf-8"}
_FILES = {entry.name: entry.read_bytes()
          for entry in resources.files("producer_api").joinpath("static").iterdir()
          if entry.name.endswith(tuple(_TYPES))}


def _file(name: str) -> Response:
    body = _FILES.get(name)
    if body is None:
        raise NotFound(f"no dashboard file {name!r}")
    media = _TYPES[name[name.rindex("."):]]
    return Response(body, media_type=media, headers={"Cache-Control": "no-cache"})


@router.get("/")
async def root() -> RedirectResponse:
    """The dashboard is the front page."""
    return RedirectResponse("/dashboard", status_code=307)


@router.get("/dashboard")
async def dashboard() -> Response:
    """The page."""
    return _file("dashboard.html")


@router.get("/dashboard/{name}")
async def asset(name: str) -> Response:
    """Its script and style sheet."""
    return _file(name)
