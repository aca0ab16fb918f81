"""Repositories of the consent service's core tables: subjects, ledger, consent state and
outbox. Other tables have their own adapter module (policies, guardians, erasures, aliases,
due, idempotency, operations, parked, receipts; subject_store holds the hot snapshot and
write statements). They return domain or view objects, never rows. None commits: the unit
of work's owner does."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

import orjson
from sqlalchemy import select, text
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from consent.adapters.db import driver
from consent.adapters.ledger_append import ChangeRow, append_changes
from consent.adapters.outbox_relay import BACKLOG_SQL
from consent.adapters.subject_store import load_snapshots
from consent.adapters.tables import ConsentState, LedgerEntry, LedgerEvidence, Subject
from consent.domain.events import DomainEvent
from consent.domain.model import SubjectSnapshot
from consent_common import tracing


@dataclass(frozen=True)
class SubjectProfile:
    """A subject's row as an export or a response shows it (the rules use snapshots)."""

    subject_id: str
    sequence: int
    jurisdiction: str | None
    birth_date: date | None
    created_at: datetime
    erased_at: datetime | None


@dataclass(frozen=True)
class LedgerEntryView:
    """One ledger entry with its stored evidence (None once erased)."""

    subject_id: str
    sequence: int
    type: str
    changes: list[dict[str, Any]]
    detail: dict[str, Any]
    policy_version: str | None
    jurisdiction: str | None
    channel: str
    actor_type: str
    actor_id: str | None
    occurred_at: datetime
    recorded_at: datetime
    evidence_hash: str
    prev_hash: str
    hash: str
    evidence: dict[str, Any] | None


class SubjectRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def get(self, subject_id: str) -> SubjectProfile | None:
        stmt = select(
            col(Subject.subject_id),
            col(Subject.sequence),
            col(Subject.jurisdiction),
            col(Subject.birth_date),
            col(Subject.created_at),
            col(Subject.erased_at),
        ).where(col(Subject.subject_id) == subject_id)
        row = (await self.session.execute(stmt)).one_or_none()
        return SubjectProfile(*row) if row is not None else None

    async def snapshot(self, subject_id: str, *, for_update: bool = False) -> SubjectSnapshot:
        """One query; with ``for_update`` the subject row is locked (created first if new)."""
        found = await load_snapshots(self.session, [subject_id], for_update=for_update)
        if subject_id not in found and for_update:
            created = await (await driver(self.session)).fetchval(CREATE_SUBJECT, subject_id)
            if created is not None:
                # ours and locked by this transaction; nothing can refer to it yet
                return SubjectSnapshot(subject_id=subject_id)
            found = await load_snapshots(self.session, [subject_id], for_update=True)
        return found.get(subject_id) or SubjectSnapshot(subject_id=subject_id)

    async def locked_snapshots(self, subject_ids: Sequence[str]) -> dict[str, SubjectSnapshot]:
        """Many existing subjects, locked in id order until the transaction ends (bulk
        import, a replay batch): one lock statement and one read."""
        return await load_snapshots(self.session, subject_ids, for_update=True)

    async def snapshots(
        self, subject_ids: Sequence[str], purposes: Sequence[str] | None = None
    ) -> dict[str, SubjectSnapshot]:
        """Many subjects in one query (batch decisions, replays); with ``purposes``, only
        their records (a read-only partial snapshot, enough to decide on them)."""
        return await load_snapshots(self.session, subject_ids, purposes=purposes)

    async def try_lock(self, subject_id: str) -> bool:
        """Lock the subject row unless another transaction holds it (schedulers)."""
        stmt = (
            select(col(Subject.subject_id))
            .where(col(Subject.subject_id) == subject_id)
            .with_for_update(skip_locked=True)
        )
        return (await self.session.execute(stmt)).scalar_one_or_none() is not None


class LedgerRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def append_changes(self, changes: Sequence[ChangeRow]) -> None:
        """Each change's ledger row, evidence, projection rows and subject head, in one
        statement however many subjects (ledger_append.py)."""
        await append_changes(self.session, changes)

    async def history(
        self, subject_id: str, *, before: int | None, limit: int
    ) -> list[LedgerEntryView]:
        """Newest first, ``limit`` entries older than ``before`` (all when None)."""
        stmt = (
            select(LedgerEntry, col(LedgerEvidence.evidence))
            .outerjoin(
                LedgerEvidence,
                (col(LedgerEvidence.subject_id) == col(LedgerEntry.subject_id))
                & (col(LedgerEvidence.sequence) == col(LedgerEntry.sequence)),
            )
            .where(col(LedgerEntry.subject_id) == subject_id)
            .order_by(col(LedgerEntry.sequence).desc())
            .limit(limit)
        )
        if before is not None:
            stmt = stmt.where(col(LedgerEntry.sequence) < before)
        return [_entry(e, ev) for e, ev in (await self.session.execute(stmt)).all()]


def _entry(e: LedgerEntry, evidence: dict[str, Any] | None) -> LedgerEntryView:
    return LedgerEntryView(
        subject_id=e.subject_id,
        sequence=e.sequence,
        type=e.type,
        changes=e.changes,
        detail=e.detail,
        policy_version=e.policy_version,
        jurisdiction=e.jurisdiction,
        channel=e.channel,
        actor_type=e.actor_type,
        actor_id=e.actor_id,
        occurred_at=e.occurred_at,
        recorded_at=e.recorded_at,
        evidence_hash=e.evidence_hash,
        prev_hash=e.prev_hash,
        hash=e.hash,
        evidence=evidence,
    )


class StateRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def subjects_with_expired_grants(
        self, now: datetime, limit: int, after: str = ""
    ) -> list[str]:
        """A page (keyset on subject id) of live subjects holding a lapsed grant."""
        stmt = (
            select(col(ConsentState.subject_id))
            .join(Subject, col(Subject.subject_id) == col(ConsentState.subject_id))
            .where(
                col(ConsentState.status) == "granted",
                col(ConsentState.expires_at) <= now,
                col(Subject.erased_at).is_(None),
                col(ConsentState.subject_id) > after,
            )
            .distinct()
            .order_by(col(ConsentState.subject_id))
            .limit(limit)
        )
        return list((await self.session.execute(stmt)).scalars())

    async def subjects_with_guardian_grants(self, after: str, limit: int) -> list[str]:
        """One page (keyset on subject id) of subjects holding a guardian's grant."""
        stmt = (
            select(col(ConsentState.subject_id))
            .where(
                col(ConsentState.status) == "granted",
                col(ConsentState.actor_type) == "guardian",
                col(ConsentState.subject_id) > after,
            )
            .distinct()
            .order_by(col(ConsentState.subject_id))
            .limit(limit)
        )
        return list((await self.session.execute(stmt)).scalars())


CREATE_SUBJECT = """
INSERT INTO subjects (subject_id, sequence) VALUES ($1, 0) ON CONFLICT DO NOTHING
RETURNING subject_id
"""
OUTBOX_INSERT = """
INSERT INTO outbox (id, aggregatetype, aggregateid, type, payload, sequence, occurred_at,
    targets, traceparent)
SELECT u.id, u.aggregatetype, u.aggregateid, u.type, u.payload::jsonb, u.sequence, u.occurred_at,
    u.targets, $9
FROM unnest($1::uuid[], $2::text[], $3::text[], $4::text[], $5::text[], $6::bigint[],
            $7::timestamptz[], $8::text[]) WITH ORDINALITY
    AS u(id, aggregatetype, aggregateid, type, payload, sequence, occurred_at, targets, n)
ORDER BY u.n
"""


class OutboxRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def backlog(self) -> tuple[int, float]:
        """Unpublished rows and the age in seconds of the oldest."""
        row = (await self.session.execute(text(BACKLOG_SQL))).one()
        return int(row.n), float(row.age)

    async def add(self, events: Sequence[DomainEvent]) -> None:
        """Outbox rows in the order given (their ``position`` follows it): one statement.
        Each keeps the active trace's ``traceparent`` (tracing on) for the relay."""
        if not events:
            return
        conn = await driver(self.session)
        await conn.execute(
            OUTBOX_INSERT,
            [e.id for e in events],
            [e.aggregatetype for e in events],
            [e.subject_id for e in events],
            [e.type for e in events],
            [orjson.dumps(e.data).decode() for e in events],
            [e.sequence for e in events],
            [e.occurred_at for e in events],
            [e.targets for e in events],
            tracing.current_traceparent(),  # the request's trace, continued by the relay
        )
