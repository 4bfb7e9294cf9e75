"""A span per batch, with tracing on: from the batch's launch until it is published and
committed, linked to the trace context of every request in it.

A batch answers many requests, each of its own trace, so the span is linked to each one's
``traceparent`` (the API's submit span, or whatever an outside producer set), and it is a child
of the first traced request's context, so a batch of one request, and the first request of any
batch, shows the worker's part inside its own trace. A batch with no traced request starts a
trace of its own. Results carry each request's own traceparent back (``processing``), not the
batch span's. With tracing off the worker makes none of this: ``Worker`` holds no
``BatchTracing``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

from opentelemetry import trace
from opentelemetry.trace import Link, SpanKind, Status, StatusCode, TracerProvider

from consumer.processing import RequestRecord
from core.tracing import span_context_of


class BatchTracing:
    """Starts each batch's span and ends it when the batch's task is done."""

    def __init__(self, provider: TracerProvider, worker: str, topic: str) -> None:
        self.provider = provider
        self.tracer = provider.get_tracer("calcstream.consumer")
        self.worker = worker
        self.topic = topic

    def follow(self, task: asyncio.Task[None], records: Sequence[RequestRecord]) -> None:
        """A span for the batch ``task`` handles, ended (failed, if the task failed) with it."""
        links = []
        for record in records:
            context = span_context_of(record.headers) if record.headers else None
            if context is not None:
                links.append(Link(context, {
                    "messaging.kafka.message.key": (record.key or b"").decode("latin-1"),
                    "messaging.destination.partition.id": str(record.partition),
                    "messaging.kafka.offset": record.offset}))
        parent = (trace.set_span_in_context(trace.NonRecordingSpan(links[0].context))
                  if links else None)
        span = self.tracer.start_span(
            f"process {self.topic}", parent, kind=SpanKind.CONSUMER, links=links,
            attributes={"messaging.system": "kafka", "messaging.operation.type": "process",
                        "messaging.destination.name": self.topic,
                        "messaging.batch.message_count": len(records),
                        "calcstream.worker": self.worker})

        def ended(done: asyncio.Task[None]) -> None:
            exc = None if done.cancelled() else done.exception()
            if exc is not None:
                span.record_exception(exc)
                span.set_status(Status(StatusCode.ERROR, type(exc).__name__))
            span.end()

        task.add_done_callback(ended)
