"""Gauges of the work the propagator still holds, sampled from its own tables.

Counters say what happened in one process; an operator (and the alert rules in
``deploy/k8s/components/monitoring``) needs what is still owed, across replicas: deliveries
pending, retrying and dead per processor, the age of the oldest one not delivered
(propagation lag), whether a processor is disabled, and how close the nearest erasure due
date is for an erasure not yet acknowledged. Every replica samples the same tables, so the
figures agree whichever replica is scraped. The reading is ``repositories/backlog.py``'s."""

from __future__ import annotations

import asyncio
import contextlib

import asyncpg
import structlog
from prometheus_client import Gauge

from propagator.unit_of_work import unit_of_work

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


async def sample(pool: asyncpg.Pool, processors: list[str]) -> None:
    """Set every gauge from one reading; processors with nothing open read 0."""
    async with unit_of_work(pool, atomic=False) as uow:
        open_work = await uow.backlog.open_work()
        disabled = await uow.health.disabled()
        now = await uow.clock.now()
    for name in sorted({*processors, *open_work, *disabled}):
        work = open_work.get(name)
        DISABLED.labels(name).set(1 if name in disabled else 0)
        OPEN.labels(name, "pending").set(work.pending if work else 0)
        OPEN.labels(name, "retrying").set(work.retrying if work else 0)
        OPEN.labels(name, "dead").set(work.dead if work else 0)
        oldest = work.oldest if work else None
        OLDEST_OPEN_AGE.labels(name).set((now - oldest).total_seconds() if oldest else 0.0)
        ERASURE_OPEN.labels(name).set(work.erasures if work else 0)
        due = work.erasure_due if work else None
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
