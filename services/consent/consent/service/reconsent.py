"""Re-consent after a material policy change: when a version takes effect, every subject
holding an affected grant recorded before it gets one ledger entry and one
``consent.reconsent_required`` event, so processors hear what reads already say.

Exactly once per (subject, version), with any number of schedulers: each subject is handled
under its row lock (SKIP LOCKED) and the ledger is checked under that lock. Paged, one
transaction per subject, throttled on the outbox backlog, and bounded in time per round.
"""

from __future__ import annotations

import asyncio
import time
from datetime import datetime
from functools import partial

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from consent.domain.entries import PendingEntry
from consent.domain.model import Actor, Change, Policy
from consent.service.context import WriteContext
from consent.service.per_subject import each_subject
from consent.service.recorder import invalidate_policies, load_policies, record
from consent.service.unit_of_work import UnitOfWork, unit_of_work
from consent.settings import get_settings

ANNOUNCER = Actor("system", "reconsent-scheduler")
PAGE = 200


async def announce(uow: UnitOfWork, subject_id: str, *, policy: Policy, now: datetime) -> bool:
    if not await uow.subjects.try_lock(subject_id):
        return False
    snapshot = await uow.subjects.snapshot(subject_id)
    affected = sorted(
        r.purpose
        for r in snapshot.records.values()
        if r.status == "granted"
        and r.purpose in policy.affected_purposes
        and r.updated_at < policy.effective_at
    )
    if not affected or snapshot.erased_at is not None:
        return False
    if await uow.due.announced(subject_id, policy.version):
        return False
    ctx = WriteContext(channel="system", actor=ANNOUNCER, now=now, policy_version=policy.version)
    policies = await load_policies(uow)
    if policy.version not in {p.version for p in policies}:  # published on another replica
        invalidate_policies()  # within this process's one-second cache
        policies = await load_policies(uow)
    entry = PendingEntry(
        "consent.reconsent_required",
        tuple(Change(p, "granted", "granted") for p in affected),
        detail={
            "reason": "material policy change",
            "effective_at": policy.effective_at.isoformat(),
        },
    )
    await record(uow, snapshot, entry, ctx, policies=policies)
    return True


async def _backlog_clear(sessions: async_sessionmaker[AsyncSession], deadline: float) -> bool:
    """Wait while the relay has more than the allowed backlog; False past the deadline."""
    cap = get_settings().scheduler_max_outbox_backlog
    while True:
        async with sessions() as session:
            if await UnitOfWork(session).due.unpublished(cap + 1) <= cap:
                return True
        if time.monotonic() >= deadline:
            return False
        await asyncio.sleep(0.1)


async def announce_reconsent(sessions: async_sessionmaker[AsyncSession], now: datetime) -> int:
    """Scheduler job: announce every material version in effect at ``now``; return how many
    subjects were told. A version is marked done once a pass finds nobody left to tell (a
    subject skipped because it was locked is found again by the next pass)."""
    deadline = time.monotonic() + get_settings().scheduler_job_budget_s
    told = 0
    async with sessions() as session:
        policies = await UnitOfWork(session).due.policies_to_announce(now)
    for policy in policies:
        after = ""
        while True:
            if not await _backlog_clear(sessions, deadline):
                return told
            async with sessions() as session:
                page = await UnitOfWork(session).due.subjects_to_announce(policy, after, PAGE)
            if not page:
                break
            told += await each_subject(sessions, page, partial(announce, policy=policy, now=now))
            after = page[-1]
        async with unit_of_work(sessions) as uow:
            if await uow.due.subjects_to_announce(policy, "", 1):
                continue  # someone was locked: the next round tells them
            await uow.due.mark_announced(policy.version, now)
    return told
