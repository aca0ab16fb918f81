"""Read-only queries over the propagator's delivery ledger, for receipts in the API."""

from __future__ import annotations

from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

PER_PROCESSOR = text("""
SELECT DISTINCT ON (d.processor) d.processor, d.status, d.attempts, d.last_error,
       d.sequence, d.event_id, d.event_type, d.updated_at, r.last_delivered_sequence,
       r.delivered_at
FROM deliveries d
LEFT JOIN processor_receipts r ON r.processor = d.processor AND r.subject_id = d.subject_id
WHERE d.subject_id = :s AND NOT d.replay
ORDER BY d.processor, d.sequence DESC, d.created_at DESC
""")

FOR_EVENT = text("""
SELECT processor, status, attempts, last_error, response_code, delivered_at, updated_at
FROM deliveries WHERE event_id = :e ORDER BY processor
""")


class ReceiptRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def per_processor(self, subject_id: str) -> list[dict[str, Any]]:
        rows = await self.session.execute(PER_PROCESSOR, {"s": subject_id})
        return [dict(r._mapping) for r in rows]

    async def for_event(self, event_id: str) -> list[dict[str, Any]]:
        rows = await self.session.execute(FOR_EVENT, {"e": event_id})
        return [dict(r._mapping) for r in rows]
