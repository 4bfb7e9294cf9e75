"""API fixtures: a real worker and a real uvicorn server in a background thread, per deployment.

The stack runs on its own event loop in its own thread, so tests talk to it only over HTTP and
WebSocket, with real clients, from async tests and sync ones (schemathesis) alike. One stack is
shared by the session; tests that restart or break things build their own with ``ApiStack``.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import pytest
import uvicorn
from fastapi import FastAPI
from opentelemetry.trace import TracerProvider

from consumer.settings import WorkerSettings
from consumer.worker import Worker
from core.net import free_port
from producer_api.__main__ import config
from producer_api.main import create_app
from producer_api.settings import ApiSettings
from schemas.topics import Topics
from tests.kafka import Deployment, create_topics, unique

# Small limits, so the limit tests stay small and fast.
TEST_LIMITS: dict[str, Any] = {
    "max_body_bytes": 64 * 1024,
    "max_batch_bytes": 32 * 1024 * 1024,
    "max_array_length": 20_000,
    "max_batch_count": 200,
    "max_wait_s": 10.0,
    "ws_max_message_bytes": 64 * 1024,
    "ws_queue_size": 50,
    "publish_timeout_s": 1.0,
    "startup_timeout_s": 10.0,
}


def new_deployment(bootstrap: str) -> Deployment:
    """Fresh topics (created now) and group on the test broker."""
    suffix = unique("api")
    dep = Deployment(bootstrap, Topics(f"calc.requests.{suffix}", f"calc.results.{suffix}",
                                       f"calc.dlq.{suffix}"), f"workers-{suffix}", 4)
    asyncio.run(create_topics(bootstrap, dep.topics.all(), dep.partitions))
    return dep


def api_settings(dep: Deployment, **overrides: Any) -> ApiSettings:
    """API settings for a deployment, with the test limits."""
    return ApiSettings(**{**dep.broker_settings().model_dump(), **TEST_LIMITS, **overrides})


class ApiStack:
    """An API (and optionally a worker) serving on a free port from a background thread;
    each traces to its own provider when given one."""

    def __init__(self, settings: ApiSettings, worker: WorkerSettings | None = None, *,
                 api_tracing: TracerProvider | None = None,
                 worker_tracing: TracerProvider | None = None) -> None:
        self.settings = settings
        self.worker_settings = worker
        self.api_tracing = api_tracing
        self.worker_tracing = worker_tracing
        self.port = free_port()
        self.base_url = f"http://127.0.0.1:{self.port}"
        self.ws_url = f"ws://127.0.0.1:{self.port}/v1/ws"
        self._ready = threading.Event()
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self.app: FastAPI | None = None
        self.error: BaseException | None = None

    def start(self, timeout: float = 30.0) -> ApiStack:
        """Start and return once the API answers and its reader caught up."""
        self._thread = threading.Thread(target=self._main, name=f"api-{self.port}", daemon=True)
        self._thread.start()
        if not self._ready.wait(timeout):
            raise TimeoutError(f"the API stack did not start within {timeout}s")
        if self.error is not None:
            raise RuntimeError("the API stack failed to start") from self.error
        return self

    def stop(self, timeout: float = 30.0) -> None:
        """Shut the API (then the worker) down gracefully; safe to call twice."""
        if self._thread is None:
            return
        if self._loop is not None and self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(timeout)
        if self._thread.is_alive():
            raise TimeoutError(f"the API stack did not stop within {timeout}s")
        self._thread = None
        if self.error is not None:
            raise RuntimeError("the API stack failed") from self.error

    def __enter__(self) -> ApiStack:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _main(self) -> None:
        try:
            asyncio.run(self._serve())
        except BaseException as exc:  # reported by start()/stop(), not lost in the thread
            self.error = exc
        finally:
            self._ready.set()

    async def _serve(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        async with contextlib.AsyncExitStack() as stack:
            if self.worker_settings is not None:
                worker = Worker(self.worker_settings, self.worker_tracing)
                await worker.start()
                stack.push_async_callback(worker.stop)
                task = asyncio.create_task(worker.run())
                stack.push_async_callback(asyncio.wait_for, task, 30)
                stack.callback(worker.request_stop)
            self.app = create_app(self.settings, self.api_tracing)
            server = uvicorn.Server(config(self.settings, "127.0.0.1", self.port, self.app,
                                           loop="none", timeout_graceful_shutdown=5))
            serving = asyncio.create_task(server.serve())
            async with asyncio.timeout(30):
                while not server.started:
                    if serving.done():
                        serving.result()
                        raise RuntimeError("uvicorn exited during start-up")
                    await asyncio.sleep(0.01)
                await self.app.state.services.reader.caught_up.wait()
            self._ready.set()
            await self._stop.wait()
            server.should_exit = True
            await serving


def observed_stack(bootstrap: str, **overrides: Any) -> ApiStack:
    """An API and a worker on fresh topics, the API scraping the worker's metrics for
    /v1/stats (not started)."""
    dep = new_deployment(bootstrap)
    port = free_port()
    settings = api_settings(dep, worker_metrics_urls=f"http://127.0.0.1:{port}/metrics",
                            **overrides)
    return ApiStack(settings, dep.worker_settings(metrics_port=port))


@pytest.fixture(scope="session")
def shared_deployment(kafka_bootstrap: str) -> Deployment:
    """The deployment the shared stack serves."""
    return new_deployment(kafka_bootstrap)


@pytest.fixture(scope="session")
def api(shared_deployment: Deployment) -> Iterator[ApiStack]:
    """One API plus one worker for the whole session (tests use distinct ids)."""
    with ApiStack(api_settings(shared_deployment),
                  shared_deployment.worker_settings()) as stack:
        yield stack


@pytest.fixture
async def client(api: ApiStack) -> AsyncIterator[httpx.AsyncClient]:
    """An HTTP client for the shared stack."""
    async with httpx.AsyncClient(base_url=api.base_url, timeout=30) as http:
        yield http
