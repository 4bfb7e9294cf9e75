"""``GET /docs`` (Swagger UI) and ``GET /redoc``: the interactive docs, nothing fetched from
outside the machine.

FastAPI's own pages load their scripts from a CDN and are blank offline. These are the same
pages (FastAPI's ``get_swagger_ui_html`` and ``get_redoc_html``) pointed at the copies that the
``fastapi-offline`` package ships (pinned in pyproject.toml: Swagger UI 5.32.6, ReDoc 2.5.3),
served from ``/docs/{name}``.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

from fastapi import APIRouter, Request
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html
from fastapi.responses import FileResponse, HTMLResponse

from producer_api.errors import NotFound

router = APIRouter(include_in_schema=False)

ASSETS = "/docs"
_DIR = Path(str(resources.files("fastapi_offline"))) / "static"
_NAMES = frozenset({"swagger-ui-bundle.js", "swagger-ui.css", "redoc.standalone.js",
                    "favicon.png"})


def _urls(request: Request) -> tuple[str, str]:
    """The spec's URL and the assets' prefix, under the app's root path."""
    root = request.scope.get("root_path", "").rstrip("/")
    return root + request.app.openapi_url, root + ASSETS


@router.get("/docs")
async def swagger_ui(request: Request) -> HTMLResponse:
    """Swagger UI."""
    spec, assets = _urls(request)
    return get_swagger_ui_html(
        openapi_url=spec, title=f"{request.app.title} - Swagger UI",
        swagger_js_url=f"{assets}/swagger-ui-bundle.js",
        swagger_css_url=f"{assets}/swagger-ui.css", swagger_favicon_url=f"{assets}/favicon.png",
        swagger_ui_parameters=request.app.swagger_ui_parameters)


@router.get("/redoc")
async def redoc(request: Request) -> HTMLResponse:
    """ReDoc, with the system's fonts instead of Google's."""
    spec, assets = _urls(request)
    return get_redoc_html(
        openapi_url=spec, title=f"{request.app.title} - ReDoc",
        redoc_js_url=f"{assets}/redoc.standalone.js", redoc_favicon_url=f"{assets}/favicon.png",
        with_google_fonts=False)


@router.get(f"{ASSETS}/{{name}}")
async def asset(name: str) -> FileResponse:
    """Their scripts, style sheet and icon."""
    if name not in _NAMES:
        raise NotFound(f"no docs file {name!r}")
    return FileResponse(_DIR / name)
