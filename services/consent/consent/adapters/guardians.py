"""Guardian links of minors, as the domain's ``GuardianLink``."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from consent.adapters.tables import GuardianLink as GuardianLinkRow
from consent.domain.model import GuardianLink


class GuardianRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def active(self, subject_id: str) -> list[GuardianLink]:
        stmt = select(GuardianLinkRow).where(
            col(GuardianLinkRow.subject_id) == subject_id,
            col(GuardianLinkRow.revoked_at).is_(None),
        )
        return [_link(row) for row in (await self.session.execute(stmt)).scalars()]

    async def active_for(self, subject_ids: Sequence[str]) -> dict[str, set[str]]:
        stmt = select(col(GuardianLinkRow.subject_id), col(GuardianLinkRow.guardian_id)).where(
            col(GuardianLinkRow.subject_id).in_(subject_ids),
            col(GuardianLinkRow.revoked_at).is_(None),
        )
        out: dict[str, set[str]] = {}
        for sid, gid in (await self.session.execute(stmt)).all():
            out.setdefault(sid, set()).add(gid)
        return out

    async def is_active_guardian(self, subject_id: str, guardian_id: str) -> bool:
        return guardian_id in (await self.active_for([subject_id])).get(subject_id, set())

    async def add_link(self, link: GuardianLink) -> None:
        self.session.add(
            GuardianLinkRow(
                id=uuid.uuid4(),
                subject_id=link.subject_id,
                guardian_id=link.guardian_id,
                method=link.method,
                reference=link.reference,
                verified_at=link.verified_at,
                linked_at=link.linked_at,
                revoked_at=link.revoked_at,
            )
        )
        await self.session.flush()

    async def revoke(self, subject_id: str, guardian_id: str, now: datetime) -> bool:
        res = await self.session.execute(
            update(GuardianLinkRow)
            .where(
                col(GuardianLinkRow.subject_id) == subject_id,
                col(GuardianLinkRow.guardian_id) == guardian_id,
                col(GuardianLinkRow.revoked_at).is_(None),
            )
            .values(revoked_at=now)
        )
        return bool(res.rowcount)  # type: ignore[attr-defined]

    async def all_for(self, subject_id: str) -> list[GuardianLink]:
        """Every link of the subject, revoked ones included, oldest first."""
        stmt = select(GuardianLinkRow).where(col(GuardianLinkRow.subject_id) == subject_id)
        rows = await self.session.execute(stmt.order_by(col(GuardianLinkRow.linked_at)))
        return [_link(row) for row in rows.scalars()]


def _link(row: GuardianLinkRow) -> GuardianLink:
    return GuardianLink(
        subject_id=row.subject_id,
        guardian_id=row.guardian_id,
        method=row.method,
        reference=row.reference,
        verified_at=row.verified_at,
        linked_at=row.linked_at,
        revoked_at=row.revoked_at,
    )
