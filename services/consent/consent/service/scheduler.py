"""The consent service's periodic jobs (expiry; later: coming of age, evidence retention)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from datetime import datetime

import structlog
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from consent.service.context import utcnow
from consent.service.expiry import expire_due
from consent.service.guardians import lapse_came_of_age

log = structlog.get_logger()
Job = Callable[[async_sessionmaker[AsyncSession], datetime], Awaitable[int]]
JOBS: dict[str, Job] = {"expiry": expire_due, "coming_of_age": lapse_came_of_age}


async def run_jobs_once(
    sessions: async_sessionmaker[AsyncSession], now: datetime
) -> dict[str, int]:
    return {name: await job(sessions, now) for name, job in JOBS.items()}


async def run_scheduler(
    sessions: async_sessionmaker[AsyncSession], interval_s: float, stop: asyncio.Event
) -> None:
    while not stop.is_set():
        try:
            counts = await run_jobs_once(sessions, utcnow())
            if any(counts.values()):
                log.info("scheduler_ran", **counts)
        except Exception as exc:  # a failed round is retried at the next tick
            log.warning("scheduler_failed", error=type(exc).__name__, detail=str(exc)[:200])
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(stop.wait(), interval_s)
