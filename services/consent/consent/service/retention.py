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

from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from consent.service.unit_of_work import UnitOfWork, unit_of_work
from consent.settings import get_settings

BATCH = 5000


async def purge_evidence(sessions: async_sessionmaker[AsyncSession], now: datetime) -> int:
    cutoff = now - timedelta(days=get_settings().evidence_retention_days)
    async with unit_of_work(sessions) as uow:
        return await uow.retention.purge_evidence(cutoff)


async def _in_batches(
    sessions: async_sessionmaker[AsyncSession],
    purge: Callable[[UnitOfWork], Awaitable[int]],
) -> int:
    """Delete in batches of ``BATCH``, one transaction each, so no lock is held for long."""
    total = 0
    while True:
        async with unit_of_work(sessions) as uow:
            deleted = await purge(uow)
        total += deleted
        if deleted < BATCH:
            return total


async def purge_idempotency(sessions: async_sessionmaker[AsyncSession], now: datetime) -> int:
    cutoff = now - timedelta(hours=get_settings().idempotency_retention_hours)
    return await _in_batches(sessions, lambda uow: uow.retention.purge_idempotency(cutoff, BATCH))


async def purge_receipts(sessions: async_sessionmaker[AsyncSession], now: datetime) -> int:
    cutoff = now - timedelta(days=get_settings().delivery_retention_days)
    return await _in_batches(sessions, lambda uow: uow.retention.purge_receipts(cutoff, BATCH))
