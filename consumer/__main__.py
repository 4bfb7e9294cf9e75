"""``python -m consumer`` (or ``calcstream worker``): run one worker until SIGTERM/SIGINT."""

from __future__ import annotations

import asyncio
import logging
import signal

from consumer.settings import WorkerSettings
from consumer.worker import Worker
from core.admin import AUTHORIZATION_ERRORS, BrokerRefused, refusal
from core.logs import configure
from core.runtime import limit_blas_threads, tune_gc

logger = logging.getLogger("consumer")


async def serve(settings: WorkerSettings) -> None:
    """Run a worker; SIGTERM or SIGINT makes it drain, commit, leave the group and return."""
    worker = Worker(settings)
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, worker.request_stop)
    try:
        async with worker:
            await worker.run()
    finally:
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(sig)
    logger.info("worker %s shut down gracefully", settings.worker_id)


def main() -> None:
    """Entry point: settings from the environment, then serve."""
    settings = WorkerSettings()
    configure(settings.log_level, settings.log_json)
    tune_gc(settings.gc_gen0_threshold)
    limit_blas_threads(settings.blas_threads)
    try:
        run(serve(settings))
    except BrokerRefused as exc:
        logger.error("worker %s cannot start: %s", settings.worker_id, exc)
        raise SystemExit(2) from None
    except AUTHORIZATION_ERRORS as exc:
        logger.error("worker %s stopped: %s", settings.worker_id, refusal(exc, settings))
        raise SystemExit(2) from None


def run(coro: object) -> None:
    """Run a coroutine on uvloop when it is installed."""
    try:
        import uvloop
    except ImportError:
        asyncio.run(coro)  # type: ignore[arg-type]
    else:
        uvloop.run(coro)  # type: ignore[arg-type]


if __name__ == "__main__":
    main()
