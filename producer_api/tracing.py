"""Traces of submits: the trace context a request record carries, a span per submit, and a
span per result read back.

**Always** (tracing on or off), a submit's request records carry the ``traceparent`` (and
``tracestate``) the request came with: the HTTP request's headers, or a WebSocket submit
message's own fields, else the WebSocket handshake's headers. Invalid ones are dropped, as
W3C Trace Context says. That is a header scan, no OpenTelemetry work.

**With tracing on** (a tracer provider, ``core.tracing``), ``TracedSubmits`` wraps the app: an
HTTP submit (``POST /v1/calculations…``) runs in a server span, child of the client's
traceparent when it sent one, and the request continues as if it had come with the span's
own traceparent, so its records carry the API's span. Each WebSocket submit gets a span of
its own (``SubmitTracing.submit``). When a result comes back carrying a traceparent, the
result reader calls ``SubmitTracing.result_read``: a consumer span, child of that context,
from the moment the worker wrote the result to the moment the API read it.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from opentelemetry import trace
from opentelemetry.trace import SpanKind, Status, StatusCode, TracerProvider
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from core.tracing import span_context_of, trace_headers
from schemas.messages import (
    TRACEPARENT_HEADER,
    TRACESTATE_HEADER,
    TRACESTATE_MAX_LENGTH,
    is_traceparent,
)

TraceHeaders = Sequence[tuple[str, bytes]]
"""``traceparent`` (and ``tracestate``) as request-record headers; empty when untraced."""

NO_TRACE: TraceHeaders = ()
SUBMIT_PATH = "/v1/calculations"
_TRACEPARENT = TRACEPARENT_HEADER.encode()
_TRACESTATE = TRACESTATE_HEADER.encode()


def carried(headers: Iterable[tuple[bytes, bytes]]) -> TraceHeaders:
    """The trace context in an HTTP request's (ASGI) headers, as request-record headers."""
    parent = state = None
    for name, value in headers:
        if name == _TRACEPARENT:
            parent = value
        elif name == _TRACESTATE:
            state = value
    if parent is None:
        return NO_TRACE
    return _valid(parent.decode("latin-1"), state.decode("latin-1") if state else None)


def from_message(doc: dict[str, Any], otherwise: TraceHeaders) -> TraceHeaders:
    """The trace context of a WebSocket submit message (its ``traceparent`` and
    ``tracestate`` fields), else ``otherwise`` (the handshake's)."""
    parent = doc.get(TRACEPARENT_HEADER)
    if not isinstance(parent, str):
        return otherwise
    state = doc.get(TRACESTATE_HEADER)
    return _valid(parent, state if isinstance(state, str) else None)


def _valid(parent: str, state: str | None) -> TraceHeaders:
    parent = parent.strip()
    if not is_traceparent(parent):
        return NO_TRACE
    headers = [(TRACEPARENT_HEADER, parent.encode())]
    if state and len(state) <= TRACESTATE_MAX_LENGTH:
        headers.append((TRACESTATE_HEADER, state.encode("latin-1", "replace")))
    return headers


class SubmitTracing:
    """Spans of the API: WebSocket submits and results read back (HTTP: ``TracedSubmits``)."""

    def __init__(self, provider: TracerProvider) -> None:
        self.provider = provider
        self.tracer = provider.get_tracer("calcstream.producer_api")

    @contextmanager
    def submit(self, name: str, parent: TraceHeaders) -> Iterator[TraceHeaders]:
        """A server span for one submit, child of ``parent``; yields the headers that carry
        the span to the request record."""
        with self.tracer.start_as_current_span(name, context=_context(parent),
                                               kind=SpanKind.SERVER) as span:
            yield trace_headers(span)

    def result_read(self, record: Any) -> None:
        """A span for a result just read (a ``ConsumerRecord``), child of the context it
        carries back; none when it carries none."""
        parent = span_context_of(record.headers)
        if parent is None:
            return
        now = time.time_ns()
        span = self.tracer.start_span(
            f"receive {record.topic}", trace.set_span_in_context(trace.NonRecordingSpan(parent)),
            kind=SpanKind.CONSUMER, start_time=min(now, record.timestamp * 1_000_000),
            attributes={"messaging.system": "kafka", "messaging.destination.name": record.topic,
                        "messaging.kafka.message.key": (record.key or b"").decode("latin-1"),
                        "messaging.kafka.offset": record.offset})
        span.end(now)


class TracedSubmits:
    """ASGI middleware: each HTTP submit in a server span whose context its records carry.

    Installed only with tracing on. Downstream the request has the span's ``traceparent``
    (and ``tracestate``) in place of the client's, which is the span's parent.
    """

    def __init__(self, app: ASGIApp, tracing: SubmitTracing) -> None:
        self.app = app
        self.tracer = tracing.tracer

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (scope["type"] != "http" or scope["method"] != "POST"
                or not scope["path"].startswith(SUBMIT_PATH)):
            await self.app(scope, receive, send)
            return
        path = scope["path"]
        with self.tracer.start_as_current_span(
                f"POST {path}", context=_context(carried(scope["headers"])),
                kind=SpanKind.SERVER,
                attributes={"http.request.method": "POST", "url.path": path,
                            "http.route": path}) as span:
            headers = [(k, v) for k, v in scope["headers"] if k not in (_TRACEPARENT, _TRACESTATE)]
            headers += [(k.encode(), v) for k, v in trace_headers(span)]

            async def observed(message: Message) -> None:
                if message["type"] == "http.response.start":
                    status = message["status"]
                    span.set_attribute("http.response.status_code", status)
                    if status >= 500:
                        span.set_status(Status(StatusCode.ERROR))
                await send(message)

            await self.app({**scope, "headers": headers}, receive, observed)


def _context(parent: TraceHeaders) -> Any:
    """The OpenTelemetry context whose current span is the remote one ``parent`` names (None:
    a new trace)."""
    remote = span_context_of(parent) if parent else None
    if remote is None:
        return None
    return trace.set_span_in_context(trace.NonRecordingSpan(remote))
