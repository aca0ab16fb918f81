"""The propagator's retention: what is neither proof nor state is deleted after a while.

- The inbox (event ids seen, for dedupe): older than any record Kafka could hand over again
  (``CONSENT_INBOX_RETENTION_DAYS``).
- Finished deliveries (``delivered``, ``superseded``, ``CONSENT_DELIVERY_RETENTION_DAYS``),
  except what is proof or state: every erasure delivery (the erasure receipts), the delivery
  a processor last acknowledged per subject (``processor_receipts``), and the newest delivery
  per subject and processor (what ``/propagation`` shows). Pending and dead deliveries are
  work, never purged.

Each job deletes in bounded batches, one transaction each, so no lock is held for long. One
propagator replica at a time runs a round (a session-level advisory lock held for the
round, ``retention_round``). The
statements are ``repositories/retention.py``'s."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta

import asyncpg
import structlog

from consent_common.settings import CommonSettings
from propagator.repositories.retention import RetentionRepository
from propagator.unit_of_work import unit_of_work

log = structlog.get_logger()
BATCH = 5000
ROUND_EVERY_S = 3600.0
Purge = Callable[[RetentionRepository, datetime, int], Awaitable[int]]


async def _purge(pool: asyncpg.Pool, purge: Purge, cutoff: datetime) -> int:
    """Batches of ``BATCH`` rows, each a unit of work of its own (one statement), until a
    batch comes back short."""
    total = 0
    while True:
        async with unit_of_work(pool, atomic=False) as uow:
            deleted = await purge(uow.retention, cutoff, BATCH)
        total += deleted
        if deleted < BATCH:
            return total


async def purge_inbox(pool: asyncpg.Pool, now: datetime, days: int = 14) -> int:
    return await _purge(pool, RetentionRepository.purge_inbox, now - timedelta(days=days))


async def purge_deliveries(pool: asyncpg.Pool, now: datetime, days: int = 30) -> int:
    return await _purge(pool, RetentionRepository.purge_deliveries, now - timedelta(days=days))


async def retention_round(
    settings: CommonSettings, pool: asyncpg.Pool, now: datetime
) -> tuple[int, int] | None:
    """One round, unless another replica is running one (None). The lock is held on one
    pooled connection's session for the whole round, and released at its end (or when that
    connection drops); the batches run on other connections."""
    async with unit_of_work(pool, atomic=False) as lock:
        if not await lock.retention.try_lock():
            return None
        try:
            inbox = await purge_inbox(pool, now, settings.inbox_retention_days)
            deliveries = await purge_deliveries(pool, now, settings.delivery_retention_days)
        finally:
            await lock.retention.unlock()
    log.info("propagator_retention", inbox=inbox, deliveries=deliveries)
    return inbox, deliveries


async def run_retention(settings: CommonSettings, pool: asyncpg.Pool, stop: asyncio.Event) -> None:
    """A round a minute after start, then every hour; never takes the propagator down."""
    delay = 60.0
    while not stop.is_set():
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(stop.wait(), delay)
        if stop.is_set():
            return
        delay = ROUND_EVERY_S
        try:
            await retention_round(settings, pool, datetime.now(UTC))
        except Exception as exc:
            log.warning("propagator_retention_error", error=type(exc).__name__)
