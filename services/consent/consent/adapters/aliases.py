"""Links from anonymous (device) subjects to the person they were merged into."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from consent.adapters.tables import SubjectAlias


class AliasRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def active(self, alias_id: str) -> SubjectAlias | None:
        stmt = select(SubjectAlias).where(
            col(SubjectAlias.alias_id) == alias_id, col(SubjectAlias.unlinked_at).is_(None)
        )
        return (await self.session.execute(stmt)).scalar_one_or_none()

    async def aliases_of(self, subject_id: str) -> list[str]:
        """The anonymous ids standing merged into ``subject_id``."""
        stmt = (
            select(col(SubjectAlias.alias_id))
            .where(
                col(SubjectAlias.subject_id) == subject_id,
                col(SubjectAlias.unlinked_at).is_(None),
            )
            .order_by(col(SubjectAlias.alias_id))
        )
        return list((await self.session.execute(stmt)).scalars())

    async def all_for(self, subject_id: str) -> list[SubjectAlias]:
        """Every link of a person or of an anonymous id, ended ones included."""
        stmt = (
            select(SubjectAlias)
            .where(
                (col(SubjectAlias.subject_id) == subject_id)
                | (col(SubjectAlias.alias_id) == subject_id)
            )
            .order_by(col(SubjectAlias.linked_at))
        )
        return list((await self.session.execute(stmt)).scalars())

    async def add(self, link: SubjectAlias) -> None:
        self.session.add(link)
        await self.session.flush()

    async def end(self, link: SubjectAlias, now: datetime) -> None:
        await self.session.execute(
            update(SubjectAlias).where(col(SubjectAlias.id) == link.id).values(unlinked_at=now)
        )
