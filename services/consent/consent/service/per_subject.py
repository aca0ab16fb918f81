"""Scheduler plumbing: run a job on many subjects, one transaction (and row lock) each."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from consent.service.unit_of_work import UnitOfWork, unit_of_work


async def each_subject(
    sessions: async_sessionmaker[AsyncSession],
    subject_ids: Iterable[str],
    step: Callable[[UnitOfWork, str], Awaitable[bool]],
) -> int:
    """``step`` on each subject in a unit of work of its own (committed unless it raises);
    return on how many it recorded something (returned True)."""
    done = 0
    for subject_id in subject_ids:
        async with unit_of_work(sessions) as uow:
            done += bool(await step(uow, subject_id))
    return done
