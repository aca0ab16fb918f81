"""Runs the consent service's periodic jobs, each defined in its own module (``JOBS``):
expiry, reconsent announcements, age transitions, abandoned replays, evidence, idempotency
and receipts retention, and the drift report's check (service/drift.py), a slice a round.
Each job owns its transactions (adapters/db.py ``transaction``).

Every API replica runs a scheduler, but a timed round runs only in the replica holding the
scheduler lease (adapters/lease.py), so N replicas do each round's work once."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta

import structlog
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from consent.adapters.lease import SCHEDULER_LEASE_KEY, AdvisoryLease
from consent.service.age_transitions import record_age_transitions
from consent.service.context import utcnow
from consent.service.drift import check_drift
from consent.service.expiry import expire_due
from consent.service.imports import resume_abandoned_imports
from consent.service.reconsent import announce_reconsent
from consent.service.retention import purge_evidence, purge_idempotency, purge_receipts

log = structlog.get_logger()
Job = Callable[[async_sessionmaker[AsyncSession], datetime], Awaitable[int]]


async def resume_abandoned_replays(
    sessions: async_sessionmaker[AsyncSession], now: datetime
) -> int:
    """A replay whose runner died (no heartbeat for a minute) is finished here."""
    from consent.adapters.operations import OperationsRepository
    from consent.service import replay
    from consent.service.processors import known_processors
    from consent.settings import get_settings

    async with sessions() as session:
        stale = await OperationsRepository(session).stale_jobs(now - timedelta(minutes=1))
    known = known_processors(get_settings().processors_file)
    for job_id in stale:
        while (result := await replay.run_batch(sessions, job_id, known)) and not result.finished:
            pass
    return len(stale)


JOBS: dict[str, Job] = {
    "expiry": expire_due,
    "reconsent": announce_reconsent,
    "age_transitions": record_age_transitions,
    "replays": resume_abandoned_replays,
    "imports": resume_abandoned_imports,
    "evidence_retention": purge_evidence,
    "idempotency_retention": purge_idempotency,
    "receipts_retention": purge_receipts,
    "drift": check_drift,
}


async def run_jobs_once(
    sessions: async_sessionmaker[AsyncSession], now: datetime
) -> dict[str, int]:
    return {name: await job(sessions, now) for name, job in JOBS.items()}


def _lease(sessions: async_sessionmaker[AsyncSession]) -> AdvisoryLease:
    engine = sessions.kw["bind"]
    url = engine.url.render_as_string(hide_password=False)
    return AdvisoryLease(url, SCHEDULER_LEASE_KEY, "scheduler")


async def run_scheduler(
    sessions: async_sessionmaker[AsyncSession],
    interval_s: float,
    stop: asyncio.Event,
    wake: asyncio.Event | None = None,
) -> None:
    """A round every ``interval_s`` in the lease holder, or at once in this replica when
    ``wake`` is set (a policy version published with an effective time already past applies
    now, not at the next tick; the jobs are safe to run concurrently)."""
    wake = wake or asyncio.Event()
    lease = _lease(sessions)
    try:
        while not stop.is_set():
            woken = wake.is_set()
            wake.clear()
            try:
                if woken or await lease.held():
                    counts = await run_jobs_once(sessions, utcnow())
                    if any(counts.values()):
                        log.info("scheduler_ran", **counts)
            except Exception as exc:  # a failed round is retried at the next tick
                log.warning("scheduler_failed", error=type(exc).__name__, detail=str(exc)[:200])
            waiters = [asyncio.create_task(stop.wait()), asyncio.create_task(wake.wait())]
            await asyncio.wait(waiters, timeout=interval_s, return_when=asyncio.FIRST_COMPLETED)
            for w in waiters:
                w.cancel()
    finally:
        await lease.release()
