"""The app: ``create_app(settings)`` wires the routers; the lifespan owns every client."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager

from aiokafka.errors import KafkaError
from fastapi import FastAPI
from opentelemetry.trace import TracerProvider

from core.admin import (
    AUTHORIZATION_ERRORS,
    BrokerRefused,
    ensure_topics,
    refusal,
    wait_for_broker,
)
from core.connections import guard_broken_connections
from core.keys import KeyRing
from core.looplag import LoopLagMonitor
from core.runtime import release_free_memory
from core.secrets import masked
from core.tasks import cancel_and_wait
from core.tracing import shutdown, tracer_provider
from producer_api import docs, metrics
from producer_api.acceptance import Acceptor
from producer_api.auth import refresh
from producer_api.deps import Services
from producer_api.forwarding import Forwarder
from producer_api.hub import Hub
from producer_api.overview import Overview
from producer_api.publisher import Publisher
from producer_api.quotas import Quotas
from producer_api.reader import ResultReader
from producer_api.responses import OrjsonResponse, install_handlers
from producer_api.routes import apidocs, calculations, contracts, dashboard, health, ops, stats, ws
from producer_api.routes import metrics as metrics_route
from producer_api.settings import ApiSettings
from producer_api.stats import ApiStats
from producer_api.store import ResultStore
from producer_api.tracing import SubmitTracing
from producer_api.workers import WorkerScraper

logger = logging.getLogger(__name__)

DESCRIPTION = """Submit NumPy calculations, get results by polling, waiting or over a WebSocket.

Requests are published to Kafka and computed by workers; this API validates, publishes and
relays results, it never computes. See `GET /v1/ops` for the available ops.
"""


def create_app(settings: ApiSettings, tracing: TracerProvider | None = None) -> FastAPI:
    """The FastAPI app for these settings (clients start when its lifespan starts), tracing
    to ``tracing`` (default: the provider the settings ask for, or none); the app shuts the
    provider down when its lifespan ends."""
    app = FastAPI(title="calcstream", version="1", description=DESCRIPTION,
                  default_response_class=OrjsonResponse, lifespan=lifespan,
                  docs_url=None, redoc_url=None)  # served by routes.apidocs, offline
    app.state.settings = settings
    app.state.keys = KeyRing(settings.api_keys_file) if settings.api_keys_file else None
    app.state.quotas = Quotas(settings)
    app.state.services = None
    app.state.refused = None
    app.state.stats = ApiStats()
    provider = tracing or tracer_provider(settings, "calcstream-api", settings.api_id)
    app.state.tracing = SubmitTracing(provider) if provider is not None else None
    app.state.registry = metrics.registry(app.state.stats, app.state, settings.api_id)
    app.state.overview = Overview(app.state.stats, WorkerScraper(settings.worker_metrics))
    for module in (calculations, ops, ws, health, metrics_route, stats, dashboard, contracts,
                   apidocs):
        app.include_router(module.router)
    install_handlers(app, settings.retry_after_s)
    docs.install(app)
    return app


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    """Start the publisher, the result reader and the loop-lag probe; stop them in reverse.
    A broker that refuses this API's credentials or operations leaves one line in
    ``app.state.refused`` for the start-up report (``__main__``)."""
    try:
        async with _started(app):
            yield
    except BrokerRefused as exc:
        app.state.refused = f"API cannot start: {exc}"
        raise
    except AUTHORIZATION_ERRORS as exc:
        app.state.refused = f"API cannot start: {refusal(exc, app.state.settings)}"
        raise


@asynccontextmanager
async def _started(app: FastAPI) -> AsyncIterator[None]:
    s: ApiSettings = app.state.settings
    counts: ApiStats = app.state.stats
    logger.info("API starting with %s", masked(s))
    guard_broken_connections()
    keys: KeyRing | None = app.state.keys
    if keys is not None and not len(keys):
        logger.warning("no active API key in %s: every request but health and the docs is "
                       "refused until `calcstream keys create` adds one", keys.path)
    await wait_for_broker(s, s.startup_timeout_s)
    if s.create_topics:
        await ensure_topics(s)
    stack = AsyncExitStack()
    async with stack:
        tracing: SubmitTracing | None = app.state.tracing
        if tracing is not None:
            stack.callback(shutdown, tracing.provider)
        publisher = Publisher(s, counts)
        stack.push_async_callback(publisher.stop)
        await publisher.start()
        store = ResultStore(s.result_store_max, s.result_store_max_bytes, s.result_ttl_s)
        hub = Hub(store, counts)
        reader = ResultReader(s, store, counts)
        reader.listeners.append(hub.publish)
        reader.traced = tracing.result_read if tracing is not None else None
        reader.demands += [store.waited_keys, hub.watched_keys]
        reader.wants_all = lambda: hub.streaming > 0
        stack.push_async_callback(reader.stop)
        await _partitions(publisher, s.requests_topic, s)
        await reader.start(await _partitions(publisher, s.results_topic, s))
        loop_lag = LoopLagMonitor(on_sample=counts.loop_lag_seconds.observe)
        stack.push_async_callback(loop_lag.stop)
        loop_lag.start()
        if s.malloc_trim_s > 0:
            trimmer = asyncio.get_running_loop().create_task(
                _release_memory(s.malloc_trim_s), name="malloc-trim")
            stack.push_async_callback(cancel_and_wait, trimmer)
        if keys is not None:
            watcher = asyncio.get_running_loop().create_task(
                _watch_keys(keys, s.keys_refresh_s), name="keys-watch")
            stack.push_async_callback(cancel_and_wait, watcher)
        forwarder: Forwarder | None = None
        if s.advertised_url and s.reply_routing:
            forwarder = Forwarder(s.advertised_url, s.reply_lookup_s)
            stack.push_async_callback(forwarder.close)
        app.state.services = Services(s, publisher, store, reader, hub,
                                      Acceptor(store, publisher, s.max_batch_errors,
                                               reader.routes, s.binary_results,
                                               reader.expect, reader.waiting_for), loop_lag,
                                      counts, keys, app.state.quotas, tracing, forwarder)
        try:
            yield
        finally:
            app.state.services = None
            logger.info("API stopping: %d results read, %d remembered, loop lag %s",
                        reader.records, len(store), loop_lag.summary())
    logger.info("API shut down gracefully")


async def _watch_keys(keys: KeyRing, every: float) -> None:
    """Pick up keys created or revoked in the keys file. Reading it is a ``stat`` (and a read
    of a few kilobytes when it changed) every ``every`` seconds: too little to leave the loop
    for."""
    while True:
        await asyncio.sleep(every)
        refresh(keys)


async def _release_memory(every: float) -> None:
    """Give back what malloc holds free (finding 22 of bench/FINDINGS.md): about a millisecond
    on the loop when much was freed, a tenth of that otherwise."""
    while True:
        await asyncio.sleep(every)
        release_free_memory()


async def _partitions(publisher: Publisher, topic: str, s: ApiSettings) -> set[int]:
    """A topic's partitions, or a clear start-up error (Kafka with topic auto-creation off, as
    calcstream's own broker runs, answers a missing topic, or one an ACL hides, with none)."""
    try:
        partitions = await publisher.partitions_for(topic)
    except KafkaError as exc:
        partitions, reason = set(), str(exc)
    else:
        reason = "no partitions"
    if partitions:
        return partitions
    if s.security_protocol.startswith("SASL_"):
        raise BrokerRefused(f"topic {topic!r} is not there or no ACL lets {s.sasl_username!r} "
                            f"see it ({reason}): create it, or grant the API WRITE on the "
                            "requests topic and READ on the results topic")
    raise RuntimeError(f"topic {topic!r} is not there ({reason}); create it, "
                       "or start with CALCSTREAM_CREATE_TOPICS=true")
