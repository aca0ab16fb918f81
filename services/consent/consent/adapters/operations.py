"""Operator queries: replay selection and jobs, deliveries admin, audit log."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any, cast

from sqlalchemy import func, select, text, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

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
NOTIFY_DELIVERIES = text("SELECT pg_notify('deliveries', '')")
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

    # --- deliveries -----------------------------------------------------------------
    async def deliveries(
        self, status: str | None, processor: str | None, after: str | None, limit: int
    ) -> list[dict[str, Any]]:
        rows = await self.session.execute(
            text("""
            SELECT id, event_id, event_type, subject_id, sequence, processor, status, attempts,
                   last_error, response_code, replay, created_at, updated_at, delivered_at
            FROM deliveries
            WHERE (CAST(:status AS text) IS NULL OR status = :status)
              AND (CAST(:processor AS text) IS NULL OR processor = :processor)
              AND (CAST(:after AS uuid) IS NULL OR id > CAST(:after AS uuid))
            ORDER BY id LIMIT :limit"""),
            {"status": status, "processor": processor, "after": after, "limit": limit},
        )
        return [dict(r._mapping) for r in rows]

    async def redrive(self, ids: list[uuid.UUID] | None, processor: str | None) -> list[str]:
        """Dead deliveries back to pending, with a fresh attempt budget."""
        rows = await self.session.execute(
            text("""
            UPDATE deliveries SET status = 'pending', attempts = 0, next_attempt_at = now(),
                   lease_until = NULL, updated_at = now()
            WHERE status = 'dead'
              AND (CAST(:ids AS uuid[]) IS NULL OR id = ANY(CAST(:ids AS uuid[])))
              AND (CAST(:processor AS text) IS NULL OR processor = :processor)
            RETURNING id"""),
            {"ids": [str(i) for i in ids] if ids is not None else None, "processor": processor},
        )
        redriven = [str(r[0]) for r in rows]
        if redriven:
            await self.notify_deliveries()
        return redriven

    async def notify_deliveries(self) -> None:
        """Wake the propagator's workers when this transaction commits (they would otherwise
        find the new pending deliveries at their next poll, up to 0.2 s later)."""
        await self.session.execute(NOTIFY_DELIVERIES)

    # --- audit ----------------------------------------------------------------------
    async def audit(
        self,
        actor: str,
        action: str,
        scope: dict[str, Any],
        counts: dict[str, Any],
        reference: str | None = None,
    ) -> int:
        res = await self.session.execute(
            insert(AuditEntry)
            .values(
                actor=actor,
                action=action,
                scope=scope,
                counts=counts,
                reference=reference,
            )
            .returning(col(AuditEntry.id))
        )
        return int(cast(int, res.scalar_one()))

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
