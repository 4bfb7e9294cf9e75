"""``python -m tests.faults.api_failpoint --port P``: the real API, which dies at a chosen point.

Same settings and server as ``python -m producer_api``. A request carrying the header
``x-fault: crash-before-response`` kills the process (``os._exit``) at the moment its response
would start: for a submit that is after the broker acknowledged the request and before the
client hears about it.
"""

from __future__ import annotations

import argparse
import os
from typing import Any

import uvicorn

from core.logs import configure
from producer_api.__main__ import config
from producer_api.settings import ApiSettings

CRASH_EXIT = 71
HEADER = (b"x-fault", b"crash-before-response")

Scope = dict[str, Any]


class CrashBeforeResponse:
    """ASGI middleware: exit the process instead of starting a flagged request's response."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] != "http" or HEADER not in scope.get("headers", []):
            await self.app(scope, receive, send)
            return

        async def crash(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                os._exit(CRASH_EXIT)
            await send(message)

        await self.app(scope, receive, crash)


def main() -> None:
    """Entry point."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    settings = ApiSettings()
    configure(settings.log_level, settings.log_json)
    cfg = config(settings, "127.0.0.1", args.port)
    cfg.app = CrashBeforeResponse(cfg.app)
    uvicorn.Server(cfg).run()


if __name__ == "__main__":
    main()
