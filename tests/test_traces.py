"""Traces across the API and the worker, on the real broker: one trace from the HTTP submit
through the worker's batch to the result read back; an outside producer's traceparent honoured;
and with tracing off (the default) no header but the client's own.

The API and a ``consumer.worker.Worker`` run in this process (``ApiStack``), each with a tracer
provider and in-memory exporter of its own, as two processes would have.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from typing import Any

import httpx
import orjson
import pytest
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind
from websockets.asyncio.client import connect

from core.settings import BrokerSettings
from core.tracing import tracer_provider
from producer_api.tracing import carried, from_message
from schemas.encoding import CONTENT_TYPE_HEADER
from schemas.messages import REPLY_PARTITION_HEADER
from tests.kafka import Deployment, TopicReader, produce, request_json
from tests.producer_api.conftest import ApiStack, api_settings, new_deployment
from tests.waiting import until


def traceparent() -> tuple[str, int, int]:
    """A fresh sampled traceparent, with its trace and span ids."""
    trace_id, span_id = secrets.randbits(128) | 1, secrets.randbits(64) | 1
    return f"00-{trace_id:032x}-{span_id:016x}-01", trace_id, span_id


class Recorded:
    """A tracer provider whose finished spans stay in memory."""

    def __init__(self) -> None:
        self.exporter = InMemorySpanExporter()
        self.provider = TracerProvider()
        self.provider.add_span_processor(SimpleSpanProcessor(self.exporter))

    def spans(self) -> tuple[ReadableSpan, ...]:
        return self.exporter.get_finished_spans()

    def named(self, name: str) -> list[ReadableSpan]:
        return [s for s in self.spans() if s.name == name]


@pytest.fixture
def traced_stack(kafka_bootstrap: str) -> Iterator[tuple[ApiStack, Recorded, Recorded]]:
    """An API and a worker on fresh topics, tracing on, each recording its own spans."""
    dep = new_deployment(kafka_bootstrap)
    api, worker = Recorded(), Recorded()
    with ApiStack(api_settings(dep), dep.worker_settings(max_batch_delay_ms=0.0),
                  api_tracing=api.provider, worker_tracing=worker.provider) as stack:
        yield stack, api, worker


def _record_headers(records: list[Any], key: str) -> list[tuple[str, bytes]]:
    """A record's headers but its reply-partition (reply routing's, always set by the API)."""
    [record] = [r for r in records if r.key == key.encode()]
    return [(k, v) for k, v in record.headers if k != REPLY_PARTITION_HEADER]


def _linked(span: ReadableSpan, trace_id: int, span_id: int) -> bool:
    return any(link.context.trace_id == trace_id and link.context.span_id == span_id
               for link in span.links)


async def test_one_trace_runs_from_the_submit_through_the_worker_to_the_result(
        traced_stack: tuple[ApiStack, Recorded, Recorded]) -> None:
    stack, api, worker = traced_stack
    topics = stack.settings.topics
    client_parent, trace_id, client_span = traceparent()
    async with httpx.AsyncClient(base_url=stack.base_url, timeout=30) as http:
        answer = await http.post("/v1/calculations?wait=10",
                                 json={"id": "traced-1", "op": "l2_norm", "data": [3, 4]},
                                 headers={"traceparent": client_parent, "tracestate": "k=v"})
    assert answer.status_code == 200, answer.text
    assert answer.json()["result"] == 5.0
    await until(lambda: len(api.named(f"receive {topics.results}")) == 1, 10,
                "the API's result span")
    # The server span ends once the answer is sent: the client may hold the answer first.
    await until(lambda: bool(api.named("POST /v1/calculations")), 10, "the API's submit span")

    [submit] = api.named("POST /v1/calculations")
    assert submit.kind is SpanKind.SERVER
    assert submit.context.trace_id == trace_id
    assert submit.parent is not None and submit.parent.span_id == client_span
    assert (submit.attributes or {})["http.response.status_code"] == 200

    # The batch span ends once the batch is committed, which may be after its result is read.
    await until(lambda: any(_linked(s, trace_id, submit.context.span_id)
                            for s in worker.spans()), 10, "the batch span")
    [batch] = [s for s in worker.named(f"process {topics.requests}")
               if _linked(s, trace_id, submit.context.span_id)]
    assert batch.kind is SpanKind.CONSUMER
    assert batch.context.trace_id == trace_id
    assert batch.parent is not None and batch.parent.span_id == submit.context.span_id
    assert (batch.attributes or {})["messaging.batch.message_count"] == 1

    [received] = api.named(f"receive {topics.results}")
    assert received.context.trace_id == trace_id
    assert received.parent is not None and received.parent.span_id == submit.context.span_id
    assert received.start_time is not None and received.end_time is not None
    assert received.start_time <= received.end_time

    # The records carry the API's span there and back, with the client's trace state.
    own = f"00-{trace_id:032x}-{submit.context.span_id:016x}-01".encode()
    async with TopicReader(stack.settings.bootstrap_servers, topics.requests) as requests, \
            TopicReader(stack.settings.bootstrap_servers, topics.results) as results:
        request_headers = _record_headers(await requests.read_count(1), "traced-1")
        result_headers = _record_headers(await results.read_count(1), "traced-1")
    assert request_headers[1:] == [("traceparent", own), ("tracestate", b"k=v")]
    assert result_headers == [("traceparent", own), ("tracestate", b"k=v")]


async def test_a_websocket_submit_has_a_span_of_its_own(
        traced_stack: tuple[ApiStack, Recorded, Recorded]) -> None:
    stack, api, worker = traced_stack
    message_parent, trace_id, message_span = traceparent()
    async with connect(stack.ws_url) as ws:
        await ws.send(orjson.dumps({"type": "submit", "traceparent": message_parent,
                                    "request": {"id": "ws-traced", "op": "sum", "data": [1, 2]}}
                                   ).decode())
        await ws.send(orjson.dumps({"type": "subscribe", "ids": ["ws-traced"]}).decode())
        await until(lambda: bool(api.named(f"receive {stack.settings.results_topic}")), 10,
                    "the result span")
    [submit] = api.named("submit /v1/ws")
    assert submit.context.trace_id == trace_id
    assert submit.parent is not None and submit.parent.span_id == message_span
    await until(lambda: any(_linked(s, trace_id, submit.context.span_id)
                            for s in worker.spans()), 10, "the batch span")


async def test_the_worker_links_an_outside_producers_traceparent(
        traced_stack: tuple[ApiStack, Recorded, Recorded]) -> None:
    stack, api, worker = traced_stack
    topics = stack.settings.topics
    outside, trace_id, span_id = traceparent()
    await produce(stack.settings.bootstrap_servers, topics.requests,
                  [(b"outside-1", request_json("outside-1", "sum", [1, 2, 3]),
                    [("traceparent", outside.encode())])])
    await until(lambda: any(_linked(s, trace_id, span_id) for s in worker.spans()), 15,
                "the batch span linked to the outside request")
    [batch] = [s for s in worker.spans() if _linked(s, trace_id, span_id)]
    assert batch.context.trace_id == trace_id
    await until(lambda: bool(api.named(f"receive {topics.results}")), 10, "the result span")
    [received] = api.named(f"receive {topics.results}")
    assert received.parent is not None
    assert (received.context.trace_id, received.parent.span_id) == (trace_id, span_id)
    assert (received.attributes or {})["messaging.kafka.message.key"] == "outside-1"


@pytest.fixture
def untraced_stack(kafka_bootstrap: str) -> Iterator[tuple[ApiStack, Deployment]]:
    """An API and a worker with the default settings: tracing off."""
    dep = new_deployment(kafka_bootstrap)
    with ApiStack(api_settings(dep), dep.worker_settings()) as stack:
        yield stack, dep


async def test_tracing_off_adds_no_header_but_the_clients_own(
        untraced_stack: tuple[ApiStack, Deployment]) -> None:
    stack, dep = untraced_stack
    assert stack.settings.tracing == "off"
    assert stack.app is not None and stack.app.state.tracing is None
    given, _, _ = traceparent()
    async with httpx.AsyncClient(base_url=stack.base_url, timeout=30) as http:
        for request_id, headers in (("plain", {}),
                                    ("traced", {"traceparent": given, "tracestate": "k=v"}),
                                    ("garbled", {"traceparent": "00-not-a-trace-context"})):
            answer = await http.post("/v1/calculations?wait=10", headers=headers,
                                     json={"id": request_id, "op": "sum", "data": [1]})
            assert answer.status_code == 200, answer.text
    async with connect(stack.ws_url) as ws:
        await ws.send(orjson.dumps({"type": "submit", "traceparent": given,
                                    "request": {"id": "ws", "op": "sum", "data": [1]}}).decode())
        assert orjson.loads(await ws.recv())["type"] == "accepted"

    binary = (CONTENT_TYPE_HEADER, b"application/vnd.calcstream.request+binary")
    trace = [("traceparent", given.encode()), ("tracestate", b"k=v")]
    async with TopicReader(dep.bootstrap, dep.topics.requests) as requests, \
            TopicReader(dep.bootstrap, dep.topics.results) as results:
        request_records = await requests.read_count(4)
        result_records = await results.read_count(4)
    assert _record_headers(request_records, "plain") == [binary]
    assert _record_headers(request_records, "traced") == [binary, *trace]
    assert _record_headers(request_records, "garbled") == [binary]
    assert _record_headers(request_records, "ws") == [binary, trace[0]]
    assert _record_headers(result_records, "plain") == []
    assert _record_headers(result_records, "traced") == trace
    assert _record_headers(result_records, "ws") == [trace[0]]


def test_the_trace_context_of_a_request_is_read_as_w3c_says() -> None:
    given, _, _ = traceparent()
    assert carried([(b"traceparent", given.encode()), (b"tracestate", b"a=1")]) == [
        ("traceparent", given.encode()), ("tracestate", b"a=1")]
    assert carried([(b"tracestate", b"a=1")]) == ()
    assert carried([(b"traceparent", given.upper().encode())]) == ()
    assert carried([(b"traceparent", given.encode()), (b"tracestate", b"x" * 513)]) == [
        ("traceparent", given.encode())]
    handshake = carried([(b"traceparent", given.encode())])
    assert from_message({"type": "submit"}, handshake) == handshake
    assert from_message({"traceparent": "nonsense"}, handshake) == ()


def test_tracing_settings_make_a_provider_only_when_on() -> None:
    assert tracer_provider(BrokerSettings(), "calcstream-api", "a") is None
    provider = tracer_provider(BrokerSettings(tracing="otlp",
                                              otlp_endpoint="http://127.0.0.1:9/v1/traces",
                                              tracing_service_name="calc-a"), "ignored", "a-1")
    assert isinstance(provider, TracerProvider)
    try:
        assert provider.resource.attributes["service.name"] == "calc-a"
        assert provider.resource.attributes["service.instance.id"] == "a-1"
    finally:
        provider.shutdown()
