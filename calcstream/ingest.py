"""``calcstream ingest``: a file of requests to the request topic, with progress and results.

The run is a source (``calcstream.sources``) feeding a ``Sink`` through a bounded window of
unacknowledged requests, and optionally a ``ResultCollector`` matching results to the ids sent.
``KafkaSink`` writes to the request topic; a sink that posts to the HTTP API (``--via-api``) can
stand in for it without touching the rest.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, Protocol

import orjson
from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaConnectionError, KafkaError, KafkaTimeoutError

from calcstream import clients
from calcstream.errors import BrokerDown, CommandError, InputError
from calcstream.progress import ProgressBoard
from calcstream.sources import Outgoing, Rejected, Source
from consumer.settings import BrokerSettings

logger = logging.getLogger(__name__)

_YIELD_EVERY = 1000


class Sink(Protocol):
    """Where requests go."""

    acked: int
    """Requests the destination has acknowledged so far."""

    async def send(self, item: Outgoing) -> None:
        """Hand over one request; waits while the window of unacknowledged ones is full."""

    async def flush(self) -> None:
        """Wait until every request handed over is acknowledged; raise the first failure."""


class KafkaSink:
    """Produces to the request topic (acks=all), at most ``window`` requests unacknowledged."""

    def __init__(self, producer: AIOKafkaProducer, topic: str, window: int) -> None:
        self.producer = producer
        self.topic = topic
        self.window = window
        self.acked = 0
        self.peak_in_flight = 0
        self._in_flight = 0
        self._slots = asyncio.Semaphore(window)
        self._idle = asyncio.Event()
        self._idle.set()
        self._failure: BaseException | None = None

    async def send(self, item: Outgoing) -> None:
        """Produce one record keyed by the request id."""
        self._raise_failure()
        await self._slots.acquire()
        try:
            future = await self.producer.send(
                self.topic, key=item.id.encode(), value=item.value, headers=item.headers()
            )
        except BaseException:
            self._slots.release()
            raise
        self._in_flight += 1
        self.peak_in_flight = max(self.peak_in_flight, self._in_flight)
        self._idle.clear()
        future.add_done_callback(self._done)

    def _done(self, future: asyncio.Future[Any]) -> None:
        self._in_flight -= 1
        self._slots.release()
        if future.cancelled():
            self._failure = self._failure or asyncio.CancelledError()
        elif (exc := future.exception()) is not None:
            self._failure = self._failure or exc
        else:
            self.acked += 1
        if self._in_flight == 0:
            self._idle.set()

    async def flush(self) -> None:
        """Wait for every acknowledgement."""
        await self._idle.wait()
        self._raise_failure()

    def _raise_failure(self) -> None:
        exc = self._failure
        if exc is None:
            return
        if isinstance(exc, KafkaError):
            raise exc
        raise CommandError(f"sending to {self.topic} failed after {self.acked:,} "
                           f"acknowledged requests: {exc!r}")


class ResultCollector:
    """Matches results on the reply topic to the ids sent and writes each first one as NDJSON."""

    def __init__(self, follower: clients.TopicFollower, out: IO[bytes]) -> None:
        self.follower = follower
        self.out = out
        self.received = 0
        self.statuses: Counter[str] = Counter()
        self._pending: set[str] = set()
        self._all_sent = False
        self._complete = asyncio.Event()

    def expect(self, request_id: str) -> None:
        """Watch for the result of ``request_id`` (call before sending it)."""
        self._pending.add(request_id)

    def all_sent(self) -> None:
        """No more ids will be expected."""
        self._all_sent = True
        self._check_complete()

    async def run(self) -> None:
        """Read results until cancelled."""
        async for batch in self.follower.batches():
            for record in batch:
                self._take(record)
            self._check_complete()

    def _take(self, record: Any) -> None:
        request_id = record.key.decode(errors="replace") if record.key else None
        if request_id not in self._pending:
            return
        self._pending.discard(request_id)
        self.received += 1
        self.out.write(record.value + b"\n")
        try:
            self.statuses[str(orjson.loads(record.value).get("status"))] += 1
        except (orjson.JSONDecodeError, AttributeError):
            self.statuses["unreadable"] += 1

    def _check_complete(self) -> None:
        if self._all_sent and not self._pending:
            self._complete.set()

    async def wait(self, timeout: float) -> list[str]:
        """Wait up to ``timeout`` s for the outstanding results; return the ids still missing."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._complete.wait(), timeout)
        return sorted(self._pending)


@dataclass
class IngestReport:
    """What an ingest did."""

    sent: int = 0
    send_seconds: float = 0.0
    rejected: list[Rejected] = field(default_factory=list)
    received: int = 0
    statuses: dict[str, int] = field(default_factory=dict)
    missing: list[str] = field(default_factory=list)
    peak_in_flight: int = 0

    @property
    def ok(self) -> bool:
        """Everything was sent, and every result that was waited for arrived."""
        return not self.rejected and not self.missing


@dataclass(frozen=True)
class IngestOptions:
    """How to run an ingest."""

    results: Path | None = None
    timeout: float = 60.0
    window: int = 20_000
    connect_timeout: float = 3.0
    progress: bool = True


async def ingest(settings: BrokerSettings, source: Source, options: IngestOptions) -> IngestReport:
    """Send every request of ``source`` to the request topic; collect results if asked."""
    topics = settings.topics
    needed = [topics.requests] + ([topics.results] if options.results else [])
    await clients.preflight(settings, needed, options.connect_timeout)
    report = IngestReport()
    async with contextlib.AsyncExitStack() as stack:
        collector = None
        if options.results:
            follower = clients.TopicFollower(settings, [topics.results], from_beginning=False)
            stack.push_async_callback(follower.stop)
            await follower.start()
            try:
                out = stack.enter_context(options.results.open("wb"))
            except OSError as exc:
                raise InputError(f"cannot write the results: {exc}") from None
            collector = ResultCollector(follower, out)
            reading = asyncio.create_task(collector.run())
            stack.push_async_callback(_cancel, reading)
        producer = clients.producer(settings)
        stack.push_async_callback(producer.stop)
        await _start(producer, settings)
        sink = KafkaSink(producer, topics.requests, options.window)
        board = ProgressBoard(options.progress)
        sent_bar = board.add("sent", source.total, lambda: sink.acked)
        results_bar = None
        if collector is not None:
            results_bar = board.add("results", source.total, lambda: collector.received)
        async with board:
            started = time.perf_counter()
            await _pump(source, sink, collector, report)
            report.send_seconds = time.perf_counter() - started
            report.sent = sink.acked
            report.peak_in_flight = sink.peak_in_flight
            board.set_total(sent_bar, report.sent)
            if collector is not None and results_bar is not None:
                board.set_total(results_bar, report.sent)
                collector.all_sent()
                report.missing = await collector.wait(options.timeout)
                report.received = collector.received
                report.statuses = dict(collector.statuses)
    return report


async def _start(producer: AIOKafkaProducer, settings: BrokerSettings) -> None:
    try:
        await producer.start()
    except KafkaConnectionError as exc:
        raise BrokerDown(f"could not connect to {settings.bootstrap_servers}: {exc}") from None


async def _pump(source: Iterable[Outgoing | Rejected], sink: Sink,
                collector: ResultCollector | None, report: IngestReport) -> None:
    try:
        for count, item in enumerate(source, start=1):
            if isinstance(item, Rejected):
                report.rejected.append(item)
                continue
            if collector is not None:
                collector.expect(item.id)
            await sink.send(item)
            if count % _YIELD_EVERY == 0:
                await asyncio.sleep(0)  # let the sender, the reader and the bars run
        await sink.flush()
    except (KafkaConnectionError, KafkaTimeoutError) as exc:
        raise BrokerDown(f"lost the broker after {sink.acked:,} acknowledged requests: "
                         f"{exc}") from None
    except KafkaError as exc:
        raise CommandError(f"sending failed after {sink.acked:,} acknowledged requests: "
                           f"{exc}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"reading the input failed after {sink.acked:,} acknowledged "
                         f"requests: {exc}") from None


async def _cancel(task: asyncio.Task[None]) -> None:
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


def summary(report: IngestReport, topic: str, results: Path | None,
            say: Callable[[str], None], max_listed: int = 10) -> None:
    """Print what happened in a few lines."""
    rate = report.sent / report.send_seconds if report.send_seconds else 0.0
    say(f"sent {report.sent:,} requests to {topic} in {report.send_seconds:.1f} s "
        f"({rate:,.0f}/s)")
    if report.rejected:
        say(f"skipped {len(report.rejected):,} invalid lines or rows:")
        for item in report.rejected[:max_listed]:
            say(f"  {item.where}: {item.reason}")
        if len(report.rejected) > max_listed:
            say(f"  ... and {len(report.rejected) - max_listed:,} more")
    if results is None:
        return
    statuses = ", ".join(f"{k} {v:,}" for k, v in sorted(report.statuses.items())) or "none"
    say(f"received {report.received:,} of {report.sent:,} results into {results} ({statuses}); "
        f"{len(report.missing):,} missing")
    if report.missing:
        shown = ", ".join(report.missing[:max_listed])
        more = f" and {len(report.missing) - max_listed:,} more" if len(report.missing) > \
            max_listed else ""
        say(f"missing: {shown}{more} (all listed in {missing_path(results)})")


def missing_path(results: Path) -> Path:
    """Where the ids of missing results are listed, one per line."""
    return results.with_name(results.name + ".missing")


def write_missing(report: IngestReport, results: Path) -> None:
    """List the missing ids next to the results file (or remove a stale list)."""
    path = missing_path(results)
    if report.missing:
        path.write_text("".join(f"{rid}\n" for rid in report.missing))
    else:
        path.unlink(missing_ok=True)
