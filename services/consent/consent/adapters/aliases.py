"""Links from anonymous (device) subjects to the person they were merged into."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from consent.adapters.tables import SubjectAlias


@dataclass(frozen=True)
class AliasLink:
    """An anonymous id merged into a person: the two merge entries' sequences, and the
    person's records the merge replaced (their ledger form, to restore on an unmerge)."""

    alias_id: str
    subject_id: str
    linked_at: datetime
    person_sequence: int
    alias_sequence: int
    replaced: dict[str, Any] = field(default_factory=dict)
    unlinked_at: datetime | None = None


class AliasRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def active(self, alias_id: str) -> AliasLink | None:
        stmt = select(SubjectAlias).where(
            col(SubjectAlias.alias_id) == alias_id, col(SubjectAlias.unlinked_at).is_(None)
        )
        row = (await self.session.execute(stmt)).scalar_one_or_none()
        return _link(row) if row is not None else None

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

    async def all_for(self, subject_id: str) -> list[AliasLink]:
        """Every link of a person or of an anonymous id, ended ones included."""
        stmt = (
            select(SubjectAlias)
            .where(
                (col(SubjectAlias.subject_id) == subject_id)
                | (col(SubjectAlias.alias_id) == subject_id)
            )
            .order_by(col(SubjectAlias.linked_at))
        )
        return [_link(row) for row in (await self.session.execute(stmt)).scalars()]

    async def add_link(self, link: AliasLink) -> None:
        self.session.add(
            SubjectAlias(
                id=uuid.uuid4(),
                alias_id=link.alias_id,
                subject_id=link.subject_id,
                linked_at=link.linked_at,
                person_sequence=link.person_sequence,
                alias_sequence=link.alias_sequence,
                replaced=link.replaced,
                unlinked_at=link.unlinked_at,
            )
        )
        await self.session.flush()

    async def end(self, alias_id: str, now: datetime) -> None:
        """End the standing link of ``alias_id`` (there is at most one)."""
        await self.session.execute(
            update(SubjectAlias)
            .where(col(SubjectAlias.alias_id) == alias_id, col(SubjectAlias.unlinked_at).is_(None))
            .values(unlinked_at=now)
        )


def _link(row: SubjectAlias) -> AliasLink:
    return AliasLink(
        alias_id=row.alias_id,
        subject_id=row.subject_id,
        linked_at=row.linked_at,
        person_sequence=row.person_sequence,
        alias_sequence=row.alias_sequence,
        replaced=row.replaced or {},
        unlinked_at=row.unlinked_at,
    )
