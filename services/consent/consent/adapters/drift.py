"""SQL of the drift report: subjects in id order, what processors acknowledged (the receipts
read model), when a subject first changed past an acknowledgement, and the scheduled
check's findings and position."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any

import orjson
from sqlalchemy.ext.asyncio import AsyncSession

from consent.adapters.db import driver
from consent.domain.drift import Difference, Held

SUBJECTS = """
SELECT subject_id FROM subjects
WHERE subject_id > $1 AND ($2::text IS NULL OR subject_id = $2)
ORDER BY subject_id LIMIT $3
"""
ACKS = """
SELECT processor, subject_id, last_delivered_sequence, event_type, decisions::text AS decisions,
       delivered_at
FROM processor_acks WHERE subject_id = ANY($1::text[])
"""
FIRST_UNACKED = """
SELECT u.subject_id, u.processor, (
    SELECT min(l.recorded_at) FROM consent_ledger l
    WHERE l.subject_id = u.subject_id AND l.sequence > u.seq) AS at
FROM unnest($1::text[], $2::text[], $3::bigint[]) AS u(subject_id, processor, seq)
"""
FINDINGS = """
SELECT processor, subject_id, purpose, delivered, current, since FROM drift_findings
WHERE subject_id = ANY($1::text[])
"""
CLEAR_RANGE = """
DELETE FROM drift_findings WHERE subject_id > $1 AND ($2::text IS NULL OR subject_id <= $2)
"""
INSERT_FINDINGS = """
INSERT INTO drift_findings (processor, subject_id, purpose, delivered, current, since,
    checked_at)
SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::bool[], $5::bool[],
                     $6::timestamptz[], $7::timestamptz[])
ON CONFLICT (processor, subject_id, purpose) DO UPDATE SET delivered = EXCLUDED.delivered,
    current = EXCLUDED.current, since = EXCLUDED.since, checked_at = EXCLUDED.checked_at
"""
COUNT_SUBJECTS = "SELECT count(*) FROM subjects WHERE $1::text IS NULL OR subject_id = $1"
COUNTS = "SELECT processor, count(*) AS n FROM drift_findings GROUP BY processor"
SCAN_STATE = """
SELECT cursor, pass_started_at, last_pass_at, last_pass_subjects FROM drift_scan WHERE id = 1
FOR UPDATE SKIP LOCKED
"""
SAVE_SCAN = """
UPDATE drift_scan SET cursor = $1, pass_started_at = $2, last_pass_at = $3,
    last_pass_subjects = $4 WHERE id = 1
"""


class DriftRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def subjects(self, after: str, subject_id: str | None, limit: int) -> list[str]:
        conn = await driver(self.session)
        return [r[0] for r in await conn.fetch(SUBJECTS, after, subject_id, limit)]

    async def count_subjects(self, subject_id: str | None) -> int:
        conn = await driver(self.session)
        return int(await conn.fetchval(COUNT_SUBJECTS, subject_id) or 0)

    async def held(self, subject_ids: Sequence[str]) -> dict[str, dict[str, Held]]:
        """Per subject, per processor: its last acknowledged delivery."""
        conn = await driver(self.session)
        out: dict[str, dict[str, Held]] = {}
        for r in await conn.fetch(ACKS, list(subject_ids)):
            decisions = orjson.loads(r["decisions"]) if r["decisions"] else None
            out.setdefault(r["subject_id"], {})[r["processor"]] = Held(
                sequence=int(r["last_delivered_sequence"]),
                event_type=r["event_type"],
                decisions=decisions if isinstance(decisions, dict) else None,
                delivered_at=r["delivered_at"],
            )
        return out

    async def first_unacknowledged(
        self, pairs: Iterable[tuple[str, str, int]]
    ) -> dict[tuple[str, str], datetime]:
        """(subject, processor, acknowledged sequence) → when the subject first changed
        after it, where it did."""
        pairs = list(pairs)
        if not pairs:
            return {}
        conn = await driver(self.session)
        rows = await conn.fetch(FIRST_UNACKED, *[list(c) for c in zip(*pairs, strict=True)])
        return {(r["subject_id"], r["processor"]): r["at"] for r in rows if r["at"] is not None}

    async def findings(self, subject_ids: Sequence[str]) -> dict[tuple[str, str, str], Any]:
        conn = await driver(self.session)
        rows = await conn.fetch(FINDINGS, list(subject_ids))
        return {(r["subject_id"], r["processor"], r["purpose"]): r for r in rows}

    async def replace_findings(
        self, after: str, upto: str | None, found: Sequence[Difference], now: datetime
    ) -> None:
        """The findings of subjects in ``(after, upto]`` become ``found``."""
        conn = await driver(self.session)
        await conn.execute(CLEAR_RANGE, after, upto)
        if found:
            await conn.execute(
                INSERT_FINDINGS,
                [d.processor for d in found],
                [d.subject_id for d in found],
                [d.purpose for d in found],
                [d.delivered for d in found],
                [d.current for d in found],
                [d.since or now for d in found],
                [now] * len(found),
            )

    async def counts(self) -> dict[str, int]:
        conn = await driver(self.session)
        return {r["processor"]: int(r["n"]) for r in await conn.fetch(COUNTS)}

    async def scan_state(self) -> Any:
        """The check's position, locked (None while another replica's check holds it)."""
        conn = await driver(self.session)
        return await conn.fetchrow(SCAN_STATE)

    async def save_scan(
        self,
        cursor: str,
        pass_started_at: datetime | None,
        last_pass_at: datetime | None,
        last_pass_subjects: int,
    ) -> None:
        conn = await driver(self.session)
        await conn.execute(SAVE_SCAN, cursor, pass_started_at, last_pass_at, last_pass_subjects)
