"""Retention jobs: what is neither proof nor state is deleted after a configurable period.

- Evidence details (hashed IP, user agent, notice): the chain committed only to their hash,
  so verification still holds.
- Idempotency responses: a retried request within the window still gets its first answer.
- The receipts read model (``propagation_receipts``, projected from the propagator's
  receipts) follows the propagator's rule for deliveries (``CONSENT_DELIVERY_RETENTION_DAYS``):
  finished receipts go, except what is proof or state: every erasure receipt, the receipt of
  what each processor last acknowledged (``processor_acks``), and the newest receipt per
  subject and processor (what ``/propagation`` shows).

(The propagator's inbox and deliveries are the propagator's to purge: propagator/retention.)

Each job deletes in bounded batches, one transaction each, so no lock is held for long."""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import TextClause, text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from consent.settings import get_settings

BATCH = 5000

IDEMPOTENCY = text("""
DELETE FROM idempotency_keys WHERE (principal, key) IN (
    SELECT principal, key FROM idempotency_keys WHERE created_at < :cutoff LIMIT :n)
""")
RECEIPTS = text("""
DELETE FROM propagation_receipts WHERE delivery_id IN (
    SELECT d.delivery_id FROM propagation_receipts d
    WHERE d.status IN ('delivered', 'superseded')
      AND d.created_at < :cutoff
      AND d.event_type <> 'subject.erasure_requested'
      AND NOT EXISTS (SELECT 1 FROM processor_acks a WHERE a.processor = d.processor
                      AND a.subject_id = d.subject_id AND a.last_event_id = d.event_id)
      AND EXISTS (SELECT 1 FROM propagation_receipts n WHERE n.processor = d.processor
                  AND n.subject_id = d.subject_id
                  AND (n.sequence, n.created_at) > (d.sequence, d.created_at))
    LIMIT :n)
""")


async def _purge(
    sessions: async_sessionmaker[AsyncSession], statement: TextClause, cutoff: datetime
) -> int:
    total = 0
    while True:
        async with sessions() as session:
            result = await session.execute(statement, {"cutoff": cutoff, "n": BATCH})
            await session.commit()
        deleted = int(result.rowcount or 0)  # type: ignore[attr-defined]
        total += deleted
        if deleted < BATCH:
            return total


async def purge_evidence(sessions: async_sessionmaker[AsyncSession], now: datetime) -> int:
    cutoff = now - timedelta(days=get_settings().evidence_retention_days)
    async with sessions() as session:
        result = await session.execute(
            text("DELETE FROM consent_evidence WHERE recorded_at < :cutoff"), {"cutoff": cutoff}
        )
        await session.commit()
        return int(result.rowcount or 0)  # type: ignore[attr-defined]


async def purge_idempotency(sessions: async_sessionmaker[AsyncSession], now: datetime) -> int:
    hours = get_settings().idempotency_retention_hours
    return await _purge(sessions, IDEMPOTENCY, now - timedelta(hours=hours))


async def purge_receipts(sessions: async_sessionmaker[AsyncSession], now: datetime) -> int:
    days = get_settings().delivery_retention_days
    return await _purge(sessions, RECEIPTS, now - timedelta(days=days))
