"""Operator queries: replay selection and jobs, audit log. (Deliveries are the propagator's:
its API, ``propagator/api.py`` over ``propagator/repositories/deliveries.py``.)"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import func, select, text, update
from sqlalchemy.exc import IntegrityError
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


@dataclass(frozen=True)
class ReplayJobView:
    """A replay (or drift repair) job as its runner and the admin API see it."""

    id: uuid.UUID
    scope_key: str
    params: dict[str, Any]
    status: str
    dry_run: bool
    total: int
    done: int
    emitted: int
    cursor: str
    created_by: str
    created_at: datetime
    heartbeat_at: datetime | None
    finished_at: datetime | None
    error: str | None


@dataclass(frozen=True)
class AuditView:
    id: int
    at: datetime
    actor: str
    action: str
    scope: dict[str, Any]
    counts: dict[str, Any]
    reference: str | None


class JobConflict(Exception):
    """Another job is pending or running for the same scope (one per scope, an index)."""


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

    async def start_job(
        self,
        *,
        scope_key: str,
        params: dict[str, Any],
        created_by: str,
        total: int,
        dry_run: bool = False,
    ) -> ReplayJobView:
        """A new running job; JobConflict (and nothing written) when its scope is taken."""
        row = ReplayJob(
            id=uuid.uuid4(),
            scope_key=scope_key,
            params=params,
            status="running",
            dry_run=dry_run,
            created_by=created_by,
            total=total,
            heartbeat_at=datetime.now(UTC),
        )
        try:
            async with self.session.begin_nested():
                self.session.add(row)
                await self.session.flush()
        except IntegrityError as exc:
            raise JobConflict(scope_key) from exc
        return _job(row)

    async def restart_job(self, job_id: uuid.UUID, now: datetime) -> None:
        """Mark a job running again; JobConflict when another job now holds its scope (the
        transaction is then unusable: let it roll back)."""
        try:
            await self.update_job(job_id, status="running", heartbeat_at=now)
        except IntegrityError as exc:
            raise JobConflict(str(job_id)) from exc

    async def job(self, job_id: uuid.UUID, *, for_update: bool = False) -> ReplayJobView | None:
        """With ``for_update``, None also when another runner holds the job (SKIP LOCKED)."""
        stmt = select(ReplayJob).where(col(ReplayJob.id) == job_id)
        if for_update:
            stmt = stmt.with_for_update(skip_locked=True)
        stmt = stmt.execution_options(populate_existing=True)  # updates went around the ORM
        row = (await self.session.execute(stmt)).scalar_one_or_none()
        return _job(row) if row is not None else None

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

    async def audit_entries(self, before: int | None, limit: int) -> list[AuditView]:
        """Newest first, ``limit`` entries older than ``before``."""
        stmt = select(AuditEntry).order_by(col(AuditEntry.id).desc()).limit(limit)
        if before is not None:
            stmt = stmt.where(col(AuditEntry.id) < before)
        return [
            AuditView(r.id or 0, r.at, r.actor, r.action, r.scope, r.counts, r.reference)
            for r in (await self.session.execute(stmt)).scalars()
        ]


def _job(row: ReplayJob) -> ReplayJobView:
    return ReplayJobView(
        id=row.id,
        scope_key=row.scope_key,
        params=row.params,
        status=row.status,
        dry_run=row.dry_run,
        total=row.total,
        done=row.done,
        emitted=row.emitted,
        cursor=row.cursor,
        created_by=row.created_by,
        created_at=row.created_at,
        heartbeat_at=row.heartbeat_at,
        finished_at=row.finished_at,
        error=row.error,
    )


def _window(params: dict[str, Any]) -> dict[str, Any]:
    return {
        "since": datetime.fromisoformat(params["since"]),
        "until": datetime.fromisoformat(params["until"]),
        "subject": params.get("subject_id"),
        "purposes": params.get("purposes") or None,
    }
