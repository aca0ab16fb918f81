"""Deletes of the retention jobs (service/retention.py): evidence details and idempotent
responses past their period. Each call is one statement; the caller's unit of work owns
the transaction."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

IDEMPOTENCY = text("""
DELETE FROM idempotency_keys WHERE (principal, key) IN (
    SELECT principal, key FROM idempotency_keys WHERE created_at < :cutoff LIMIT :n)
""")
RECEIPTS = text("""
DELETE FROM propagation_receipts WHERE delivery_id IN (
    SELECT d.delivery_id FROM propagation_receipts d
    WHERE d.status IN ('delivered', 'superseded')
      AND d.created_at < :cutoff
      AND d.event_type <> 'subject.erasure_requested'
      AND NOT EXISTS (SELECT 1 FROM processor_acks a WHERE a.processor = d.processor
                      AND a.subject_id = d.subject_id AND a.last_event_id = d.event_id)
      AND EXISTS (SELECT 1 FROM propagation_receipts n WHERE n.processor = d.processor
                  AND n.subject_id = d.subject_id
                  AND (n.sequence, n.created_at) > (d.sequence, d.created_at))
    LIMIT :n)
""")
EVIDENCE = text("DELETE FROM consent_evidence WHERE recorded_at < :cutoff")


class RetentionRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def purge_idempotency(self, cutoff: datetime, limit: int) -> int:
        """Up to ``limit`` stored responses older than ``cutoff``; how many went."""
        result = await self.session.execute(IDEMPOTENCY, {"cutoff": cutoff, "n": limit})
        return int(result.rowcount or 0)  # type: ignore[attr-defined]

    async def purge_receipts(self, cutoff: datetime, limit: int) -> int:
        """Up to ``limit`` finished receipts that are neither proof nor state."""
        result = await self.session.execute(RECEIPTS, {"cutoff": cutoff, "n": limit})
        return int(result.rowcount or 0)  # type: ignore[attr-defined]

    async def purge_evidence(self, cutoff: datetime) -> int:
        result = await self.session.execute(EVIDENCE, {"cutoff": cutoff})
        return int(result.rowcount or 0)  # type: ignore[attr-defined]
