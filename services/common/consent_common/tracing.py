"""OpenTelemetry tracing for both services: off by default, on when
``OTEL_TRACES_EXPORTER`` is set (``otlp``, ``console``; comma-separated; ``none`` is off).

One trace follows a change from the HTTP request through the write transaction (the
outbox row keeps the request's ``traceparent``), the relay's publish (the Kafka record
carries it as the CloudEvents ``traceparent`` extension, header ``ce_traceparent``), the
propagator's intake (the delivery row keeps it) and each webhook attempt (sent as the W3C
``traceparent`` header). Span attributes never hold a subject id or personal data: HTTP
spans carry route templates, not paths; Kafka spans no record key."""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from contextlib import contextmanager

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter
from opentelemetry.trace import Span, SpanKind
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

CE_HEADER = "ce_traceparent"  # the CloudEvents distributed-tracing extension, Kafka binding
_PROPAGATOR = TraceContextTextMapPropagator()
_configured = False
tracer = trace.get_tracer("consent-platform")


def requested() -> bool:
    return os.environ.get("OTEL_TRACES_EXPORTER", "none").strip().lower() not in ("", "none")


def enabled() -> bool:
    return _configured


def configure(service_name: str, exporters: Sequence[SpanExporter] | None = None) -> bool:
    """Install the tracer provider once per process (the first service to ask names it);
    ``exporters`` replaces the environment's choice (tests: an in-memory exporter)."""
    global _configured
    if _configured:
        return True
    if exporters is None:
        if not requested():
            return False
        exporters = [_exporter(name) for name in os.environ["OTEL_TRACES_EXPORTER"].split(",")]
    resource = Resource.create({"service.name": os.environ.get("OTEL_SERVICE_NAME", service_name)})
    provider = TracerProvider(resource=resource)
    for exporter in exporters:
        provider.add_span_processor(BatchSpanProcessor(exporter))
    trace.set_tracer_provider(provider)
    from opentelemetry.instrumentation.asyncpg import AsyncPGInstrumentor

    AsyncPGInstrumentor().instrument()  # statements only: parameters are never recorded
    _configured = True
    return True


def _exporter(name: str) -> SpanExporter:
    name = name.strip().lower()
    if name == "otlp":
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        return OTLPSpanExporter()  # OTEL_EXPORTER_OTLP_ENDPOINT and friends
    if name == "console":
        from opentelemetry.sdk.trace.export import ConsoleSpanExporter

        return ConsoleSpanExporter()
    raise ValueError(f"OTEL_TRACES_EXPORTER: unknown exporter {name!r} (otlp, console, none)")


def current_traceparent() -> str | None:
    """The active span's W3C ``traceparent``, or None outside a recorded trace."""
    if not _configured:
        return None
    carrier: dict[str, str] = {}
    _PROPAGATOR.inject(carrier)
    return carrier.get("traceparent")


@contextmanager
def span(
    name: str,
    traceparent: str | None,
    kind: SpanKind = SpanKind.INTERNAL,
    attributes: dict[str, str | int | bool] | None = None,
) -> Iterator[Span | None]:
    """A span continuing ``traceparent`` (a new trace without one); nothing when off."""
    if not _configured:
        yield None
        return
    parent = _PROPAGATOR.extract({"traceparent": traceparent}) if traceparent else None
    token = otel_context.attach(parent) if parent is not None else None
    try:
        with tracer.start_as_current_span(name, kind=kind, attributes=attributes) as s:
            yield s
    finally:
        if token is not None:
            otel_context.detach(token)
