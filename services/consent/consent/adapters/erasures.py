"""Erasure requests, as the domain's ``ErasureRequest``, and forgetting what identifies."""

from __future__ import annotations

from sqlalchemy import delete, select, update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from consent.adapters.tables import ErasureRequest as ErasureRow
from consent.adapters.tables import LedgerEvidence, Subject
from consent.domain.rights import ErasureRequest


class ErasureRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def latest(self, subject_id: str) -> ErasureRequest | None:
        stmt = (
            select(ErasureRow)
            .where(col(ErasureRow.subject_id) == subject_id)
            .order_by(col(ErasureRow.requested_at).desc())
            .limit(1)
        )
        row = (await self.session.execute(stmt)).scalar_one_or_none()
        if row is None:
            return None
        return ErasureRequest(
            request_id=row.request_id,
            subject_id=row.subject_id,
            reason=row.reason,
            requested_at=row.requested_at,
            due_at=row.due_at,
            sequence=row.sequence,
            event_id=row.event_id,
        )

    async def add_request(self, request: ErasureRequest) -> None:
        self.session.add(
            ErasureRow(
                request_id=request.request_id,
                subject_id=request.subject_id,
                reason=request.reason,
                requested_at=request.requested_at,
                due_at=request.due_at,
                sequence=request.sequence,
                event_id=request.event_id,
            )
        )
        await self.session.flush()

    async def forget_personal_data(self, subject_id: str) -> None:
        """Erasure keeps the ledger (no personal data in it) and drops what identifies:
        birth date, stored evidence (hashed IP, user agent), idempotent responses."""
        await self.session.execute(
            update(Subject).where(col(Subject.subject_id) == subject_id).values(birth_date=None)
        )
        await self.session.execute(
            delete(LedgerEvidence).where(col(LedgerEvidence.subject_id) == subject_id)
        )
