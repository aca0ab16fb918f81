"""Relay metrics on the shared Prometheus registry.

The relay process never forks; the API workers set the backlog and parked gauges at scrape
time from the database, so with several workers (consent/api/metrics_exposition.py) the
value the most recent scrape read is the one to show."""

from __future__ import annotations

from prometheus_client import Counter, Gauge

PUBLISHED = Counter("consent_outbox_published_total", "Outbox rows published to Kafka")
ERRORS = Counter("consent_outbox_publish_errors_total", "Failed publish attempts")
BACKLOG = Gauge(
    "consent_outbox_backlog", "Outbox rows not yet published", multiprocess_mode="mostrecent"
)
OLDEST_AGE = Gauge(
    "consent_outbox_oldest_unpublished_seconds",
    "Age of the oldest unpublished row",
    multiprocess_mode="mostrecent",
)
LEADER = Gauge(
    "consent_outbox_relay_leader",
    "1 while this process is the active relay",
    multiprocess_mode="livesum",  # leaders among the live processes
)


def set_backlog(count: int, oldest_age_s: float) -> None:
    BACKLOG.set(count)
    OLDEST_AGE.set(oldest_age_s)


PARKED = Counter(
    "consent_outbox_parked_total",
    "Outbox rows the broker or the encoder refused: parked, holding back only their subject",
)
PARKED_NOW = Gauge(
    "consent_parked",
    "Parked now, read from the database at scrape time: records intake could not use "
    "(where=intake) and outbox rows the relay could not publish (where=outbox)",
    ["where"],
    multiprocess_mode="mostrecent",
)
