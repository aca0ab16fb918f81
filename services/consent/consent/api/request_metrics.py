"""Request rate and latency per route, for the dashboard and the alert rules.

Labels are the route *template* (``/v1/subjects/{subject_id}/decisions``), never the path:
paths carry subject identifiers, which must not reach metrics, and would make the series
unbounded. Requests that match no route share one label."""

from __future__ import annotations

from prometheus_client import Counter, Histogram

UNMATCHED = "unmatched"
REQUESTS = Counter(
    "consent_api_requests_total",
    "HTTP requests answered, by route template, method and status class (2xx, 4xx, 5xx)",
    ["route", "method", "status"],
)
LATENCY = Histogram(
    "consent_api_request_seconds",
    "Time from the request's arrival to its last byte, by route template and method",
    ["route", "method"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)


def route_label(route: object) -> str:
    """The template of the matched route, or ``unmatched``."""
    path = getattr(route, "path", None)
    return path if isinstance(path, str) else UNMATCHED


def observe(route: str, method: str, status: int, seconds: float) -> None:
    REQUESTS.labels(route, method, f"{status // 100}xx").inc()
    LATENCY.labels(route, method).observe(seconds)
