"""Operators' view of outbox rows the relay parked: listing, retry and skip; the callers audit
each action. (Records the propagator's intake parked are the propagator's: its API.)"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

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


OUTBOX_COUNT = text(
    "SELECT count(*) FROM outbox WHERE parked_at IS NOT NULL AND published_at IS NULL"
)


class ParkedRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def outbox_count(self) -> int:
        """Outbox rows parked by the relay: a gauge."""
        return int((await self.session.execute(OUTBOX_COUNT)).scalar() or 0)

    async def outbox_rows(self, limit: int) -> list[dict[str, Any]]:
        rows = await self.session.execute(LIST_OUTBOX, {"limit": limit})
        return [dict(r._mapping) for r in rows]

    async def retry_outbox(self, row_id: str) -> str | None:
        """Back to the relay; returns the subject it held back."""
        return (await self.session.execute(RETRY_OUTBOX, {"id": row_id})).scalar()

    async def skip_outbox(self, row_id: str, now: datetime) -> str | None:
        """Never published: its subject's later rows go on (they carry the full decisions)."""
        return (await self.session.execute(SKIP_OUTBOX, {"id": row_id, "now": now})).scalar()
