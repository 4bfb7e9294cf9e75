"""``python -m tests.faults.failpoints``: the real worker with a crash injected at a chosen point.

Used as a worker process by the fault scenarios, exactly like ``python -m consumer`` (same
settings from ``CALCSTREAM_*``), plus:

- ``FAULT_CRASH_AFTER_PUBLISH=N``: after the N-th batch's results are acknowledged and before
  its offsets are committed (with exactly_once: before its transaction commits), the process
  dies (``os._exit``, no clean-up: a crash).
- ``FAULT_ABORT_OP=name``: registers an op ``name`` whose kernel aborts the process (SIGABRT,
  as a segfaulting native kernel would) for every request that uses it.
- ``FAULT_LOSE_ACK=N``: the N-th publish of results (a batch's, or with exactly_once a
  partition's share of one; else the first after it the broker took whole) is acknowledged,
  and the worker is told it failed (``KafkaConnectionError``), as when a broker dies after
  writing a request and before answering it: the records are in the log, and the worker does
  not know.
- ``FAULT_STALL_ACK=N``: the N-th such publish is sent and never returns, as when the
  producer is left waiting for an answer that never comes.
- ``FAULT_HOLD_OP=name:seconds``: registers an op ``name`` whose kernel keeps the interpreter
  lock for that long per batch, as a native call that never releases it would: the worker's
  event loop, and with it its heartbeats, stand still meanwhile.
"""

from __future__ import annotations

import asyncio
import logging
import os
import sys
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import numpy as np
from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaConnectionError

from consumer import ops, outbox, publishing, transactions
from consumer.outbox import Outgoing
from consumer.settings import WorkerSettings
from consumer.worker import Worker
from core.logs import configure

logger = logging.getLogger("tests.faults.failpoints")

CRASH_EXIT = 70
ABORTED = -6  # Popen.returncode of a process killed by SIGABRT


class CrashingWorker(Worker):
    """A worker that dies between publishing a batch and committing it."""

    def __init__(self, settings: WorkerSettings, crash_after_publish: int) -> None:
        super().__init__(settings)
        self.crash_after_publish = crash_after_publish
        self.published = 0

    def _sent(self) -> None:
        self.published += 1
        if self.published == self.crash_after_publish:
            logger.warning("failpoint: crashing after publishing batch %d, before its commit",
                           self.published)
            logging.shutdown()
            os._exit(CRASH_EXIT)


def _abort(*_: Any) -> Any:
    os.abort()


def _holding(seconds: float) -> Any:
    def hold(arrays: Sequence[Any], _args: Sequence[Any]) -> list[float]:
        interval = sys.getswitchinterval()
        # No other thread gets the lock back before the interval is up.
        sys.setswitchinterval(seconds + 1.0)
        try:
            end = time.perf_counter() + seconds
            while time.perf_counter() < end:
                pass
        finally:
            sys.setswitchinterval(interval)
        return [0.0] * len(arrays)
    return hold


def _faulty_acks(nth: int, results_topic: str, stall: bool = False
                ) -> Callable[..., Awaitable[tuple[list[Outgoing], list[BaseException]]]]:
    calls, lost = 0, False

    async def send_all(producer: AIOKafkaProducer, records: Sequence[Outgoing]
                       ) -> tuple[list[Outgoing], list[BaseException]]:
        nonlocal calls, lost
        unsent, errors = await outbox.send_all(producer, records)
        if lost or not any(record[0] == results_topic for record in records):
            return unsent, errors  # (attempts journal writes are not publishes of results)
        calls += 1
        if calls >= nth and not unsent:  # (one the broker took whole)
            lost = True
            if stall:
                logger.warning("failpoint: the publish of %d records never returns", len(records))
                await asyncio.Event().wait()
            logger.warning("failpoint: the acknowledgement of %d records is lost", len(records))
            return list(records), [KafkaConnectionError("failpoint: acknowledgement lost")]
        return unsent, errors
    return send_all


async def serve(settings: WorkerSettings) -> None:
    """Run the (possibly crashing) worker until it crashes or the process is killed."""
    crash_after = int(os.environ.get("FAULT_CRASH_AFTER_PUBLISH", "0"))
    worker = CrashingWorker(settings, crash_after) if crash_after else Worker(settings)
    async with worker:
        await worker.run()


def main() -> None:
    """Entry point."""
    abort_op = os.environ.get("FAULT_ABORT_OP")
    if abort_op:
        ops.register(ops.Op(abort_op, "Aborts the worker process (a crash injected by tests).",
                            batch=_abort, reference=lambda x, a: np.nan))
    settings = WorkerSettings()
    lose_ack = int(os.environ.get("FAULT_LOSE_ACK", "0"))
    stall_ack = int(os.environ.get("FAULT_STALL_ACK", "0"))
    if lose_ack or stall_ack:
        publishing.send_all = transactions.send_all = _faulty_acks(
            lose_ack or stall_ack, settings.topics.results, stall=bool(stall_ack))
    hold = os.environ.get("FAULT_HOLD_OP")
    if hold:
        name, seconds = hold.split(":")
        ops.register(ops.Op(name, "Holds the interpreter lock (a stall injected by tests).",
                            batch=_holding(float(seconds)), reference=lambda x, a: 0.0))
    configure(settings.log_level, settings.log_json)
    asyncio.run(serve(settings))


if __name__ == "__main__":
    main()
