"""``python -m producer_api [--host H] [--port P]``: serve the API until SIGTERM/SIGINT.

Settings come from ``CALCSTREAM_*`` variables, read once here. uvicorn turns SIGTERM or SIGINT
into a graceful shutdown: it stops accepting connections, lets requests in flight finish, then
the lifespan closes the producer and the result reader.
"""

from __future__ import annotations

import argparse
import ipaddress
import logging
from collections.abc import Sequence

import uvicorn
from fastapi import FastAPI
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from core.logs import configure
from core.runtime import tune_gc
from core.secrets import redact_keys_in
from producer_api.admission import Admission
from producer_api.auth import Authentication
from producer_api.fastpath import FastPath
from producer_api.main import create_app
from producer_api.quotas import QuotaGate
from producer_api.settings import ApiSettings
from producer_api.tracing import TracedSubmits

logger = logging.getLogger("producer_api")


def main(argv: Sequence[str] | None = None) -> None:
    """Entry point: parse the command line, read settings, serve."""
    parser = argparse.ArgumentParser(prog="python -m producer_api", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1", help="bind address (127.0.0.1)")
    parser.add_argument("--port", type=int, default=8000, help="port (8000)")
    args = parser.parse_args(argv)
    settings = ApiSettings()
    configure(settings.log_level, settings.log_json)
    try:
        cfg = config(settings, args.host, args.port)
    except OpenRefused as exc:
        raise SystemExit(f"python -m producer_api: {exc}") from None
    logger.info("API on http://%s:%d: %s", args.host, args.port, access(settings))
    server = uvicorn.Server(cfg)
    tune_gc(settings.gc_gen0_threshold)
    server.run()


def config(settings: ApiSettings, host: str, port: int, app: FastAPI | None = None,
           **overrides: object) -> uvicorn.Config:
    """The uvicorn configuration for ``app`` (default: one built from ``settings``)."""
    options: dict[str, object] = {
        "host": host,
        "port": port,
        "loop": _pick("uvloop", "asyncio"),
        "http": _pick("httptools", "h11"),
        "ws": "websockets-sansio",
        "lifespan": "on",
        "log_config": None,
        "access_log": settings.access_log,
        "ws_max_size": settings.ws_max_message_bytes,
        "ws_per_message_deflate": settings.ws_compression,
        "timeout_graceful_shutdown": 10,
        "timeout_keep_alive": settings.keep_alive_s,
        "server_header": False,
    }
    options.update(overrides)
    refuse_open(settings, host)
    redact_keys_in("uvicorn.access", "uvicorn.error", "producer_api")
    app = app or create_app(settings)
    inner = FastPath(app, app.state, settings.retry_after_s) if settings.fast_path else app
    guarded = Authentication(QuotaGate(inner, app.state.quotas, app.state.stats),
                             app.state.keys)
    admitted: ASGIApp = Admission(guarded, app.state.stats, settings)
    if app.state.tracing is not None:
        admitted = TracedSubmits(admitted, app.state.tracing)
    return uvicorn.Config(StartupReport(admitted, app.state), **options)  # type: ignore[arg-type]


class StartupReport:
    """ASGI wrapper: when the broker refused the API at start-up, uvicorn logs the one line
    that says why (``app.state.refused``) instead of a traceback."""

    def __init__(self, app: ASGIApp, state: object) -> None:
        self.app = app
        self.state = state

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "lifespan":
            await self.app(scope, receive, send)
            return

        async def report(message: Message) -> None:
            refused = getattr(self.state, "refused", None)
            if message["type"] == "lifespan.startup.failed" and refused:
                message = {**message, "message": refused}
            await send(message)

        await self.app(scope, receive, report)


class OpenRefused(ValueError):
    """An API without keys was asked to serve beyond loopback without ``api_open``."""


def refuse_open(settings: ApiSettings, host: str) -> None:
    """``OpenRefused`` for an API without keys on an address other machines can reach,
    unless ``api_open`` says that is meant."""
    if settings.api_keys_file is not None or settings.api_open or is_loopback(host):
        return
    raise OpenRefused(
        f"no API keys (CALCSTREAM_API_KEYS_FILE) and {host!r} is not a loopback address: "
        "anyone who can reach it could submit work and read every result. Create keys with "
        "`calcstream keys create`, or set CALCSTREAM_API_OPEN=true to serve it open on purpose")


def is_loopback(host: str) -> bool:
    """``host`` is a loopback address (or ``localhost``)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def access(settings: ApiSettings) -> str:
    """Who may use the API, for its start-up line."""
    if settings.api_keys_file is not None:
        return f"API keys from {settings.api_keys_file}, each seeing its own tenant"
    if settings.api_open:
        return ("OPEN (CALCSTREAM_API_OPEN): no API keys, anyone who can reach it may submit "
                "and read every result")
    return "no API keys, loopback only: anyone on this machine may submit and read everything"


def _pick(preferred: str, fallback: str) -> str:
    try:
        __import__(preferred)
    except ImportError:
        return fallback
    return preferred


if __name__ == "__main__":
    main()
