"""Tracing set-up shared by the API and the worker: settings → a tracer provider, or none.

Off by default (``CALCSTREAM_TRACING=off``): no provider, and the services do no OpenTelemetry
work at all; they only carry a request's ``traceparent`` header from the submit to the result.
``otlp`` exports spans in batches over OTLP/HTTP from a background thread. The SDK and the
exporter are the optional extra ``calcstream[tracing]``, imported only when tracing is on; the
API (``opentelemetry-api``) is what the services' own tracing modules use.

The context of a record travels in its W3C headers (``schemas.messages.TRACEPARENT_HEADER``);
``span_context_of`` reads it, ``trace_headers`` writes a span's.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable

from opentelemetry import trace
from opentelemetry.trace import Span, SpanContext, TracerProvider
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from core.settings import BrokerSettings
from schemas.messages import TRACEPARENT_HEADER, TRACESTATE_HEADER

logger = logging.getLogger(__name__)

_PROPAGATOR = TraceContextTextMapPropagator()


class TracingUnavailable(RuntimeError):
    """Tracing is on but the OpenTelemetry SDK or its OTLP exporter is not installed."""


def tracer_provider(settings: BrokerSettings, service: str,
                    instance: str) -> TracerProvider | None:
    """The provider the settings ask for (None when tracing is off): OTLP/HTTP export in
    batches, ``service`` unless ``tracing_service_name`` names another, ``instance`` as
    ``service.instance.id``."""
    if settings.tracing == "off":
        return None
    try:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import TracerProvider as SdkTracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor
        from opentelemetry.sdk.trace.sampling import ParentBased, TraceIdRatioBased
    except ImportError as exc:
        raise TracingUnavailable(
            f"CALCSTREAM_TRACING={settings.tracing} needs the OpenTelemetry SDK and OTLP "
            f"exporter: pip install 'calcstream[tracing]' ({exc})") from None
    name = settings.tracing_service_name or service
    provider = SdkTracerProvider(
        resource=Resource.create({"service.name": name, "service.instance.id": instance}),
        sampler=ParentBased(TraceIdRatioBased(settings.tracing_sample_ratio)))
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(settings.otlp_endpoint)))
    logger.info("tracing on: %s exports OTLP to %s", name,
                settings.otlp_endpoint or "the OTEL_EXPORTER_OTLP_* default")
    return provider


def shutdown(provider: TracerProvider | None) -> None:
    """Export what is still queued and stop the provider (a no-op for None)."""
    stop = getattr(provider, "shutdown", None)
    if stop is not None:
        stop()


def span_context_of(headers: Iterable[tuple[str, bytes]]) -> SpanContext | None:
    """The remote span context a record's ``traceparent`` (and ``tracestate``) name, or None
    when it has none that is valid."""
    carrier: dict[str, str] = {}
    for key, value in headers:
        if key in (TRACEPARENT_HEADER, TRACESTATE_HEADER) and key not in carrier:
            carrier[key] = value.decode("latin-1")
    if TRACEPARENT_HEADER not in carrier:
        return None
    context = trace.get_current_span(_PROPAGATOR.extract(carrier)).get_span_context()
    return context if context.is_valid else None


def trace_headers(span: Span) -> list[tuple[str, bytes]]:
    """The W3C headers that carry ``span``'s context: ``traceparent``, and ``tracestate``
    when it has one."""
    carrier: dict[str, str] = {}
    _PROPAGATOR.inject(carrier, trace.set_span_in_context(span))
    return [(key, value.encode()) for key, value in carrier.items()]
