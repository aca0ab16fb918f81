"""Operator queries: replay selection and jobs, audit log. (Deliveries are the propagator's:
its API, ``propagator.admin``.)"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import func, select, text, update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from consent.adapters.audit import AuditRecord, write_one
from consent.adapters.db import driver
from consent.adapters.tables import AuditEntry, ReplayJob

SELECT_SUBJECTS = """
SELECT DISTINCT l.subject_id FROM consent_ledger l
WHERE l.recorded_at >= :since AND l.recorded_at < :until AND l.subject_id > :after
  AND (CAST(:subject AS text) IS NULL OR l.subject_id = :subject)
  AND (CAST(:purposes AS text[]) IS NULL OR EXISTS (
        SELECT 1 FROM jsonb_array_elements(l.changes) c
        WHERE c->>'purpose' = ANY(CAST(:purposes AS text[]))))
ORDER BY l.subject_id LIMIT :limit
"""
COUNT_SUBJECTS = """
SELECT count(DISTINCT l.subject_id) FROM consent_ledger l
WHERE l.recorded_at >= :since AND l.recorded_at < :until
  AND (CAST(:subject AS text) IS NULL OR l.subject_id = :subject)
  AND (CAST(:purposes AS text[]) IS NULL OR EXISTS (
        SELECT 1 FROM jsonb_array_elements(l.changes) c
        WHERE c->>'purpose' = ANY(CAST(:purposes AS text[]))))
"""


class OperationsRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    # --- replay ---------------------------------------------------------------------
    async def replay_subjects(self, params: dict[str, Any], after: str, limit: int) -> list[str]:
        rows = await self.session.execute(
            text(SELECT_SUBJECTS), {**_window(params), "after": after, "limit": limit}
        )
        return [r[0] for r in rows]

    async def count_replay_subjects(self, params: dict[str, Any]) -> int:
        return int(
            (await self.session.execute(text(COUNT_SUBJECTS), _window(params))).scalar() or 0
        )

    async def add_job(self, job: ReplayJob) -> None:
        self.session.add(job)
        await self.session.flush()

    async def job(self, job_id: uuid.UUID, *, for_update: bool = False) -> ReplayJob | None:
        stmt = select(ReplayJob).where(col(ReplayJob.id) == job_id)
        if for_update:
            stmt = stmt.with_for_update(skip_locked=True)
        return (await self.session.execute(stmt)).scalar_one_or_none()

    async def stale_jobs(self, older_than: datetime) -> list[uuid.UUID]:
        stmt = select(col(ReplayJob.id)).where(
            col(ReplayJob.status).in_(["pending", "running"]),
            col(ReplayJob.dry_run).is_(False),
            func.coalesce(col(ReplayJob.heartbeat_at), col(ReplayJob.created_at)) < older_than,
        )
        return list((await self.session.execute(stmt)).scalars())

    async def update_job(self, job_id: uuid.UUID, **values: Any) -> None:
        await self.session.execute(
            update(ReplayJob).where(col(ReplayJob.id) == job_id).values(**values)
        )

    # --- audit ----------------------------------------------------------------------
    async def audit(
        self,
        actor: str,
        action: str,
        scope: dict[str, Any],
        counts: dict[str, Any],
        reference: str | None = None,
    ) -> int:
        record = AuditRecord(actor, action, scope, counts, reference)
        return await write_one(await driver(self.session), record)

    async def audit_entries(self, before: int | None, limit: int) -> list[AuditEntry]:
        stmt = select(AuditEntry).order_by(col(AuditEntry.id).desc()).limit(limit)
        if before is not None:
            stmt = stmt.where(col(AuditEntry.id) < before)
        return list((await self.session.execute(stmt)).scalars())


def _window(params: dict[str, Any]) -> dict[str, Any]:
    return {
        "since": datetime.fromisoformat(params["since"]),
        "until": datetime.fromisoformat(params["until"]),
        "subject": params.get("subject_id"),
        "purposes": params.get("purposes") or None,
    }
