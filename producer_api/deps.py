"""Request dependencies: the clients the lifespan started, as ``Annotated`` aliases."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Annotated

from fastapi import Depends
from starlette.requests import HTTPConnection

from core.keys import KeyRing
from core.looplag import LoopLagMonitor
from producer_api.acceptance import Acceptor
from producer_api.errors import NotStartedError
from producer_api.forwarding import Forwarder
from producer_api.hub import Hub
from producer_api.publisher import Publisher
from producer_api.quotas import Quotas
from producer_api.reader import ResultReader
from producer_api.settings import ApiSettings
from producer_api.stats import ApiStats
from producer_api.store import ResultStore
from producer_api.tracing import SubmitTracing
from producer_api.turns import Turns


@dataclass(frozen=True, slots=True)
class Services:
    """Everything a handler may use; built by the lifespan, gone after it."""

    settings: ApiSettings
    publisher: Publisher
    store: ResultStore
    reader: ResultReader
    hub: Hub
    acceptor: Acceptor
    loop_lag: LoopLagMonitor
    stats: ApiStats
    keys: KeyRing | None = None
    quotas: Quotas | None = None
    tracing: SubmitTracing | None = None
    forwarder: Forwarder | None = None
    turns: Turns = field(default_factory=Turns)
    """Large parses and renderings take turns on the event loop (turns.py)."""


async def get_services(conn: HTTPConnection) -> Services:
    """The running app's services; ``NotStartedError`` (503) before start-up or after shutdown.

    ``async`` on purpose: FastAPI runs plain ``def`` dependencies in a thread pool, a thread
    hop per request that the hot path cannot afford.
    """
    services: Services | None = getattr(conn.app.state, "services", None)
    if services is None:
        raise NotStartedError("the API is not started (its lifespan has not run)")
    return services


ServicesDep = Annotated[Services, Depends(get_services)]
