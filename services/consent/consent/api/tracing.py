"""The consent API's HTTP spans (OpenTelemetry's FastAPI instrumentation): an incoming
``traceparent`` is continued; paths and queries, which carry subject ids, are replaced by
the route template before anything is exported."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from opentelemetry.instrumentation.fastapi import FastAPIInstrumentor
from opentelemetry.trace import Span

from consent.api.request_metrics import UNMATCHED

PATH_ATTRIBUTES = ("http.target", "url.path", "http.url", "url.full")
QUERY_ATTRIBUTES = ("url.query",)


def instrument(app: FastAPI) -> None:
    FastAPIInstrumentor.instrument_app(
        app,
        server_request_hook=_scrub,
        excluded_urls="/healthz,/readyz,/metrics",
        exclude_spans=["receive", "send"],
    )


def _scrub(span: Span, scope: dict[str, Any]) -> None:
    """The span is named ``METHOD /route/{template}`` by the instrumentation's own routing;
    the path attributes get that template, never the request's path."""
    if span is None or not span.is_recording():
        return
    name = getattr(span, "name", "")
    method, _, template = name.partition(" ")
    template = template if template.startswith("/") else UNMATCHED
    for key in PATH_ATTRIBUTES:
        span.set_attribute(key, template)
    for key in QUERY_ATTRIBUTES:
        span.set_attribute(key, "")
    if not template.startswith("/"):
        span.update_name(method or "HTTP")
