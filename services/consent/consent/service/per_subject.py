"""Scheduler plumbing: run a job on many subjects, one transaction (and row lock) each."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from consent.service.unit_of_work import UnitOfWork


async def each_subject(
    sessions: async_sessionmaker[AsyncSession],
    subject_ids: Iterable[str],
    step: Callable[[UnitOfWork, str], Awaitable[bool]],
) -> int:
    """Commit where ``step`` returns True, roll back otherwise; return how many committed."""
    done = 0
    for subject_id in subject_ids:
        async with sessions() as session:
            uow = UnitOfWork(session)
            if await step(uow, subject_id):
                await uow.commit()
                done += 1
            else:
                await uow.rollback()
    return done
