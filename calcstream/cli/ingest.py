"""``calcstream ingest``: a file of requests to the request topic, with progress and results.

The run is a source (``calcstream.sources``) feeding a ``Sink`` through a bounded window of
unacknowledged requests, and optionally a ``ResultCollector`` matching results to the ids sent
(``calcstream.collector``). ``KafkaSink`` writes to the request topic and the reply topic is
read directly; with ``--via-api`` an ``ApiSink`` posts to the API's batch endpoint
(``calcstream.apisink``) and the results come over the API's websocket.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, Protocol

from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaConnectionError, KafkaError, KafkaTimeoutError

from calcstream.cli import kafka_io
from calcstream.cli.apisink import ApiSink, block_ids
from calcstream.cli.collector import ResultCollector, TopicCollector, WatchCollector
from calcstream.cli.errors import ApiDown, BrokerDown, CommandError, InputError
from calcstream.cli.progress import ProgressBoard
from calcstream.cli.sources import NpySource, Outgoing, Rejected, Source
from calcstream.client import Client
from calcstream.client.errors import ClientError, InvalidRequest, Unavailable
from core.producers import stop_producer
from core.settings import BrokerSettings
from core.tasks import cancel_and_wait

logger = logging.getLogger(__name__)

_YIELD_EVERY = 1000
_API_CHUNK = 5_000
"""Requests per API call: NDJSON lines or ``.npy`` rows."""
_API_RESULTS_WINDOW = 20_000
"""Results awaited at once over the websocket (at least two chunks' worth)."""


class Sink(Protocol):
    """Where requests go."""

    acked: int
    """Requests the destination has acknowledged so far."""

    peak_in_flight: int
    """The most requests handed over and not acknowledged at one time."""

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
    via_api: str | None = None
    """The calcstream API's URL, to send through its batch endpoint instead of to Kafka."""
    api_key: str | None = None
    """The key for an API with keys (``$CALCSTREAM_API_KEY``)."""


async def ingest(settings: BrokerSettings, source: Source, options: IngestOptions) -> IngestReport:
    """Send every request of ``source`` to the request topic (or through the API at
    ``options.via_api``); collect results if asked."""
    if options.via_api:
        return await _ingest_via_api(options.via_api, source, options)
    topics = settings.topics
    needed = [topics.requests] + ([topics.results] if options.results else [])
    await kafka_io.preflight(settings, needed, options.connect_timeout)
    async with contextlib.AsyncExitStack() as stack:
        collector = None
        if options.results:
            follower = kafka_io.TopicFollower(settings, [topics.results], from_beginning=False)
            stack.push_async_callback(follower.stop)
            await follower.start()
            collector = TopicCollector(follower, _open_results(stack, options.results))
        producer = kafka_io.producer(settings)
        stack.push_async_callback(stop_producer, producer, options.connect_timeout)
        await _start(producer, settings)
        sink = KafkaSink(producer, topics.requests, options.window)
        return await _drive(source, sink, collector, options, stack)


async def _ingest_via_api(url: str, source: Source, options: IngestOptions) -> IngestReport:
    """The same run, posted to the API's batch endpoint, results from its websocket."""
    try:
        async with Client(url, connect_timeout=options.connect_timeout,
                          api_key=options.api_key) as client, \
                contextlib.AsyncExitStack() as stack:
            if not await client.ready():
                raise ApiDown(f"the API at {url} is not ready (GET {url}/readyz says why)")
            limits = await client.limits()
            chunk = max(1, min(_API_CHUNK, options.window, limits.ws_max_subscriptions // 4))
            if isinstance(source, NpySource):
                width = 8 * source.width
                chunk = max(1, min(chunk, (limits.max_batch_bytes - 1024) // width))
            collector = None
            if options.results:
                watch = await client.watch(window=max(2 * chunk, _API_RESULTS_WINDOW))
                stack.callback(watch.close)
                collector = WatchCollector(watch, _open_results(stack, options.results))
            sink = ApiSink(client, window=options.window, chunk=chunk,
                           on_rejected=collector.forget if collector is not None else None)
            stack.push_async_callback(sink.close)
            blocks = _pump_blocks(source, sink, chunk) if isinstance(source, NpySource) else None
            report = await _drive(source, sink, collector, options, stack, blocks)
            report.rejected.extend(sink.rejected)
            return report
    except Unavailable as exc:
        raise ApiDown(str(exc)) from None
    except InvalidRequest as exc:
        raise InputError(f"the API refused the input: {exc}") from None
    except ClientError as exc:
        raise CommandError(str(exc)) from None


def _open_results(stack: contextlib.ExitStack | contextlib.AsyncExitStack,
                  path: Path) -> IO[bytes]:
    try:
        return stack.enter_context(path.open("wb"))
    except OSError as exc:
        raise InputError(f"cannot write the results: {exc}") from None


Pump = Callable[[Sink, ResultCollector | None, IngestReport], Awaitable[None]]
"""Sends a whole source; ``_pump`` unless the sink wants the source in another shape."""


async def _drive(source: Source, sink: Sink, collector: ResultCollector | None,
                 options: IngestOptions, stack: contextlib.AsyncExitStack,
                 pump: Pump | None = None) -> IngestReport:
    """Pump the source into the sink with progress bars, then wait for the results."""
    report = IngestReport()
    if collector is not None:
        reading = asyncio.create_task(collector.run())
        stack.push_async_callback(cancel_and_wait, reading)
    board = ProgressBoard(options.progress)
    sent_bar = board.add("sent", source.total, lambda: sink.acked)
    results_bar = None
    if collector is not None:
        results_bar = board.add("results", source.total, lambda: collector.received)
    async with board:
        started = time.perf_counter()
        if pump is None:
            await _pump(source, sink, collector, report)
        else:
            await pump(sink, collector, report)
        report.send_seconds = time.perf_counter() - started
        report.sent = sink.acked
        report.peak_in_flight = sink.peak_in_flight
        board.set_total(sent_bar, report.sent)
        if collector is not None and results_bar is not None:
            board.set_total(results_bar, report.sent)
            collector.all_sent()
            report.missing = await collector.wait(options.timeout)
            if reading.done() and not reading.cancelled() and reading.exception():
                reading.result()  # the results stream broke: say why
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
                await collector.expect(item.id)
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


def _pump_blocks(source: NpySource, sink: ApiSink, rows: int) -> Pump:
    """Send an ``.npy`` file to the API in blocks of ``rows`` rows (``.npy`` bodies)."""

    async def pump(_: Sink, collector: ResultCollector | None, report: IngestReport) -> None:
        try:
            for first, block in source.blocks(rows):
                prefix, ids = block_ids(source.id_prefix, first, len(block))
                if collector is not None:
                    for request_id in ids:
                        await collector.expect(request_id)
                await sink.send_rows(first, block, ids, op=source.op, args=source.args,
                                     id_prefix=prefix)
            await sink.flush()
        except OSError as exc:
            raise InputError(f"reading the input failed after {sink.acked:,} acknowledged "
                             f"requests: {exc}") from None

    return pump


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
