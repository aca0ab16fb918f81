"""Expiry: a grant past its validity period lapses, with one ``consent.expired`` per subject.

Safe with several API instances: each subject is handled under its row lock taken with
SKIP LOCKED, and re-read under that lock, so a lapse is recorded exactly once.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from consent.domain.entries import PendingEntry
from consent.domain.model import Actor, Change
from consent.service.context import WriteContext
from consent.service.per_subject import each_subject
from consent.service.recorder import load_policies, record
from consent.service.unit_of_work import UnitOfWork

SYSTEM = Actor("system", "expiry-scheduler")


async def expire_subject(uow: UnitOfWork, subject_id: str, now: datetime) -> bool:
    if not await uow.subjects.try_lock(subject_id):
        return False
    snapshot = await uow.subjects.snapshot(subject_id)
    expired = [
        r
        for r in snapshot.records.values()
        if r.status == "granted" and r.expires_at is not None and r.expires_at <= now
    ]
    if not expired or snapshot.erased_at is not None:
        return False
    changes = [
        Change(r.purpose, "granted", "unset") for r in sorted(expired, key=lambda r: r.purpose)
    ]
    ctx = WriteContext(channel="system", actor=SYSTEM, now=now)
    entry = PendingEntry(
        "consent.expired", tuple(changes), detail={"reason": "validity period ended"}
    )
    await record(uow, snapshot, entry, ctx, policies=await load_policies(uow))
    return True


async def expire_due(
    sessions: async_sessionmaker[AsyncSession], now: datetime, batch: int = 200
) -> int:
    """Record every lapse due at ``now``; return how many subjects lapsed."""
    total, after = 0, ""
    while True:
        async with sessions() as session:
            due = await UnitOfWork(session).state.subjects_with_expired_grants(now, batch, after)
        if not due:
            return total
        total += await each_subject(
            sessions, due, lambda uow, subject_id: expire_subject(uow, subject_id, now)
        )
        after = due[-1]
