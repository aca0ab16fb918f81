"""Gauges of the work the propagator still holds, sampled from its own tables.

Counters say what happened in one process; an operator (and the alert rules in
``deploy/k8s/components/monitoring``) needs what is still owed, across replicas: deliveries
pending, retrying and dead per processor, the age of the oldest one not delivered
(propagation lag), whether a processor is disabled, and how close the nearest erasure due
date is for an erasure not yet acknowledged. Every replica samples the same tables, so the
figures agree whichever replica is scraped."""

from __future__ import annotations

import asyncio
import contextlib
from datetime import datetime

import asyncpg
import structlog
from prometheus_client import Gauge

log = structlog.get_logger()
SAMPLE_EVERY_S = 15.0

OPEN = Gauge(
    "consent_deliveries_open",
    "Deliveries not yet acknowledged: pending (never tried), retrying (failed, will retry), "
    "dead (attempts exhausted, waits for a redrive)",
    ["processor", "state"],
)
OLDEST_OPEN_AGE = Gauge(
    "consent_delivery_oldest_open_seconds",
    "Age of the oldest pending or retrying delivery per processor (0 when none): "
    "how far a processor lags behind the decisions",
    ["processor"],
)
ERASURE_OPEN = Gauge(
    "consent_erasure_deliveries_open",
    "Erasure deliveries a processor has not acknowledged yet",
    ["processor"],
)
DISABLED = Gauge(
    "consent_processor_disabled",
    "1 while the processor is disabled after failing too long (an operator enables it)",
    ["processor"],
)
ERASURE_DUE_IN = Gauge(
    "consent_erasure_delivery_due_in_seconds",
    "Seconds until the nearest due date of an unacknowledged erasure delivery "
    "(negative: overdue); absent when none is open",
    ["processor"],
)

SAMPLE = """
SELECT processor,
       count(*) FILTER (WHERE status = 'pending' AND attempts = 0) AS pending,
       count(*) FILTER (WHERE status = 'pending' AND attempts > 0) AS retrying,
       count(*) FILTER (WHERE status = 'dead') AS dead,
       min(created_at) FILTER (WHERE status = 'pending') AS oldest,
       count(*) FILTER (WHERE event_type = 'subject.erasure_requested'
                        AND status IN ('pending', 'dead')) AS erasures,
       min((payload->>'due_at')::timestamptz) FILTER (
           WHERE event_type = 'subject.erasure_requested' AND status IN ('pending', 'dead')
       ) AS erasure_due
FROM deliveries
WHERE status IN ('pending', 'dead')
GROUP BY processor
"""


async def sample(pool: asyncpg.Pool, processors: list[str]) -> None:
    """Set every gauge from one query; processors with nothing open read 0."""
    async with pool.acquire() as conn:
        rows = {r["processor"]: r for r in await conn.fetch(SAMPLE)}
        disabled = {
            r["processor"]
            for r in await conn.fetch(
                "SELECT processor FROM processor_health WHERE disabled_at IS NOT NULL"
            )
        }
        now: datetime = await conn.fetchval("SELECT now()")
    for name in sorted({*processors, *rows, *disabled}):
        row = rows.get(name)
        DISABLED.labels(name).set(1 if name in disabled else 0)
        for state in ("pending", "retrying", "dead"):
            OPEN.labels(name, state).set(row[state] if row else 0)
        oldest = row["oldest"] if row else None
        OLDEST_OPEN_AGE.labels(name).set((now - oldest).total_seconds() if oldest else 0.0)
        ERASURE_OPEN.labels(name).set(row["erasures"] if row else 0)
        due = row["erasure_due"] if row else None
        if due is not None:
            ERASURE_DUE_IN.labels(name).set((due - now).total_seconds())
        else:
            with contextlib.suppress(KeyError):
                ERASURE_DUE_IN.remove(name)


async def run_sampler(pool: asyncpg.Pool, processors: list[str], stop: asyncio.Event) -> None:
    """Sample now, then every ``SAMPLE_EVERY_S``; a failed sample is logged, never fatal."""
    while not stop.is_set():
        try:
            await sample(pool, processors)
        except Exception as exc:  # gauges are an aid: never take the propagator down
            log.warning("backlog_sample_failed", error=type(exc).__name__)
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(stop.wait(), SAMPLE_EVERY_S)
