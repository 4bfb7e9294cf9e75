"""``python -m producer_api [--host H] [--port P]``: serve the API until SIGTERM/SIGINT.

Settings come from ``CALCSTREAM_*`` variables, read once here. uvicorn turns SIGTERM or SIGINT
into a graceful shutdown: it stops accepting connections, lets requests in flight finish, then
the lifespan closes the producer and the result reader.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence

import uvicorn
from fastapi import FastAPI

from core.logs import configure
from core.runtime import tune_gc
from producer_api.admission import Admission
from producer_api.fastpath import SubmitFastPath
from producer_api.main import create_app
from producer_api.settings import ApiSettings


def main(argv: Sequence[str] | None = None) -> None:
    """Entry point: parse the command line, read settings, serve."""
    parser = argparse.ArgumentParser(prog="python -m producer_api", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1", help="bind address (127.0.0.1)")
    parser.add_argument("--port", type=int, default=8000, help="port (8000)")
    args = parser.parse_args(argv)
    settings = ApiSettings()
    configure(settings.log_level, settings.log_json)
    server = uvicorn.Server(config(settings, args.host, args.port))
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
        "timeout_graceful_shutdown": 10,
        "server_header": False,
    }
    options.update(overrides)
    app = app or create_app(settings)
    inner = SubmitFastPath(app, app.state, settings.retry_after_s) if settings.fast_path else app
    return uvicorn.Config(Admission(inner, app.state.stats, settings),
                          **options)  # type: ignore[arg-type]


def _pick(preferred: str, fallback: str) -> str:
    try:
        __import__(preferred)
    except ImportError:
        return fallback
    return preferred


if __name__ == "__main__":
    main()
