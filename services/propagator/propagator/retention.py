"""The propagator's retention: what is neither proof nor state is deleted after a while.

- The inbox (event ids seen, for dedupe): older than any record Kafka could hand over again
  (``CONSENT_INBOX_RETENTION_DAYS``).
- Finished deliveries (``delivered``, ``superseded``, ``CONSENT_DELIVERY_RETENTION_DAYS``),
  except what is proof or state: every erasure delivery (the erasure receipts), the delivery
  a processor last acknowledged per subject (``processor_receipts``), and the newest delivery
  per subject and processor (what ``/propagation`` shows). Pending and dead deliveries are
  work, never purged.

Each job deletes in bounded batches, one transaction each, so no lock is held for long. One
propagator replica at a time runs a round (a transaction-scoped advisory lock)."""

from __future__ import annotations

import asyncio
import contextlib
from datetime import UTC, datetime, timedelta

import asyncpg
import structlog

from consent_common.settings import CommonSettings

log = structlog.get_logger()
BATCH = 5000
ROUND_EVERY_S = 3600.0
LOCK = "SELECT pg_try_advisory_xact_lock(hashtext('propagator-retention'))"

INBOX = """
DELETE FROM propagator_inbox WHERE event_id IN (
    SELECT event_id FROM propagator_inbox WHERE received_at < $1 LIMIT $2)
"""
DELIVERIES = """
DELETE FROM deliveries WHERE id IN (
    SELECT d.id FROM deliveries d
    WHERE d.status IN ('delivered', 'superseded')
      AND d.created_at < $1
      AND d.event_type <> 'subject.erasure_requested'
      AND NOT EXISTS (SELECT 1 FROM processor_receipts r WHERE r.processor = d.processor
                      AND r.subject_id = d.subject_id AND r.last_event_id = d.event_id)
      AND EXISTS (SELECT 1 FROM deliveries n WHERE n.processor = d.processor
                  AND n.subject_id = d.subject_id
                  AND (n.sequence, n.created_at) > (d.sequence, d.created_at)
                  AND (d.replay OR NOT n.replay))
    LIMIT $2)
"""


async def _purge(pool: asyncpg.Pool, statement: str, cutoff: datetime) -> int:
    total = 0
    while True:
        async with pool.acquire() as conn:
            done = await conn.execute(statement, cutoff, BATCH)
        deleted = int(done.split()[-1])
        total += deleted
        if deleted < BATCH:
            return total


async def purge_inbox(pool: asyncpg.Pool, now: datetime, days: int = 14) -> int:
    return await _purge(pool, INBOX, now - timedelta(days=days))


async def purge_deliveries(pool: asyncpg.Pool, now: datetime, days: int = 30) -> int:
    return await _purge(pool, DELIVERIES, now - timedelta(days=days))


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
            async with pool.acquire() as conn, conn.transaction():
                if not await conn.fetchval(LOCK):
                    continue  # another replica runs this round
            now = datetime.now(UTC)
            inbox = await purge_inbox(pool, now, settings.inbox_retention_days)
            deliveries = await purge_deliveries(pool, now, settings.delivery_retention_days)
            log.info("propagator_retention", inbox=inbox, deliveries=deliveries)
        except Exception as exc:
            log.warning("propagator_retention_error", error=type(exc).__name__)
