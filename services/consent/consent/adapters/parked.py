"""Operators' view of what could not be used: records the propagator's intake parked, and
outbox rows the relay parked. Listing, retry and drop/skip; the callers audit each action."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

LIST_PARKED = text("""
SELECT id, topic, partition, "offset", reason, parked_at, retry_requested_at, attempts
FROM parked_records WHERE id > :after ORDER BY id LIMIT :limit
""")
RETRY_PARKED = text("""
UPDATE parked_records SET retry_requested_at = :now WHERE id = :id RETURNING id
""")
DROP_PARKED = text('DELETE FROM parked_records WHERE id = :id RETURNING topic, partition, "offset"')

LIST_OUTBOX = text("""
SELECT id, aggregateid, type, sequence, parked_at, last_error FROM outbox
WHERE parked_at IS NOT NULL AND published_at IS NULL ORDER BY position LIMIT :limit
""")
RETRY_OUTBOX = text("""
UPDATE outbox SET parked_at = NULL WHERE id = CAST(:id AS uuid) AND published_at IS NULL
  AND parked_at IS NOT NULL RETURNING aggregateid
""")
SKIP_OUTBOX = text("""
UPDATE outbox SET published_at = :now, last_error = coalesce(last_error, '') || ' (skipped)'
WHERE id = CAST(:id AS uuid) AND published_at IS NULL AND parked_at IS NOT NULL
RETURNING aggregateid
""")


COUNTS = text("""
SELECT (SELECT count(*) FROM parked_records) AS records,
       (SELECT count(*) FROM outbox WHERE parked_at IS NOT NULL AND published_at IS NULL) AS rows
""")


class ParkedRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def counts(self) -> tuple[int, int]:
        """(records parked by intake, outbox rows parked by the relay): gauges."""
        row = (await self.session.execute(COUNTS)).one()
        return int(row.records), int(row.rows)

    async def records(self, after: int, limit: int) -> list[dict[str, Any]]:
        rows = await self.session.execute(LIST_PARKED, {"after": after, "limit": limit})
        return [dict(r._mapping) for r in rows]

    async def request_retry(self, parked_id: int, now: datetime) -> bool:
        """The propagator feeds it to intake again (within a second)."""
        found = await self.session.execute(RETRY_PARKED, {"id": parked_id, "now": now})
        return found.first() is not None

    async def drop(self, parked_id: int) -> dict[str, Any] | None:
        row = (await self.session.execute(DROP_PARKED, {"id": parked_id})).first()
        return dict(row._mapping) if row else None

    async def outbox_rows(self, limit: int) -> list[dict[str, Any]]:
        rows = await self.session.execute(LIST_OUTBOX, {"limit": limit})
        return [dict(r._mapping) for r in rows]

    async def retry_outbox(self, row_id: str) -> str | None:
        """Back to the relay; returns the subject it held back."""
        return (await self.session.execute(RETRY_OUTBOX, {"id": row_id})).scalar()

    async def skip_outbox(self, row_id: str, now: datetime) -> str | None:
        """Never published: its subject's later rows go on (they carry the full decisions)."""
        return (await self.session.execute(SKIP_OUTBOX, {"id": row_id, "now": now})).scalar()
