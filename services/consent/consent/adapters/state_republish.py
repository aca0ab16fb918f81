"""``consentctl state republish``'s reads: every subject's last told state, a page at a
time, on one plain connection the command opens (no transaction: each page is re-read
after it is published, to catch subjects that changed meanwhile)."""

from __future__ import annotations

from collections.abc import Sequence

import asyncpg

from consent.adapters.subject_store import SNAPSHOT_SQL, _snapshot
from consent.domain.model import Policy, SubjectSnapshot

COUNT_SQL = "SELECT count(*) FROM subjects WHERE sequence > 0"
PAGE_SQL = """
SELECT subject_id, sequence, jurisdiction, erased_at, decisions::text AS decisions, updated_at
FROM subjects WHERE sequence > 0 AND subject_id > $1 ORDER BY subject_id LIMIT $2
"""
ROWS_SQL = """
SELECT subject_id, sequence, jurisdiction, erased_at, decisions::text AS decisions, updated_at
FROM subjects WHERE subject_id = ANY($1::text[])
"""
POLICIES_SQL = "SELECT version, effective_at, material, affected_purposes FROM policy_versions"


class SubjectStates:
    """Rows are ``(subject_id, sequence, jurisdiction, erased_at, decisions, updated_at)``,
    ``decisions`` as JSON text (None for a row written before the column existed)."""

    def __init__(self, conn: asyncpg.Connection) -> None:
        self.conn = conn

    async def count(self) -> int:
        return int(await self.conn.fetchval(COUNT_SQL))

    async def page(self, after: str, limit: int) -> list[asyncpg.Record]:
        """Subjects with a sequence, in id order after ``after``."""
        rows: list[asyncpg.Record] = await self.conn.fetch(PAGE_SQL, after, limit)
        return rows

    async def rows(self, subject_ids: Sequence[str]) -> list[asyncpg.Record]:
        rows: list[asyncpg.Record] = await self.conn.fetch(ROWS_SQL, list(subject_ids))
        return rows

    async def policies(self) -> list[Policy]:
        rows = await self.conn.fetch(POLICIES_SQL)
        return [Policy(r[0], r[1], r[2], frozenset(r[3])) for r in rows]

    async def snapshots(self, subject_ids: Sequence[str]) -> list[SubjectSnapshot]:
        """Full snapshots (for decisions computed now), unlocked."""
        return [_snapshot(r) for r in await self.conn.fetch(SNAPSHOT_SQL, list(subject_ids), None)]
