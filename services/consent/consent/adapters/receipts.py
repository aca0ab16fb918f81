"""The consent service's read model of propagation, for receipts in the API.

Projected from ``consent.receipts.v1`` (``service/receipts.py``): the propagator reports each
change of a live delivery, and what each processor acknowledged. How stale it may be: see
``docs/operations.md`` ("Propagation receipts")."""

from __future__ import annotations

from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

PER_PROCESSOR = text("""
SELECT DISTINCT ON (d.processor) d.processor, d.status, d.attempts, d.last_error,
       d.sequence, d.event_id, d.event_type, d.updated_at, a.last_delivered_sequence,
       a.delivered_at
FROM propagation_receipts d
LEFT JOIN processor_acks a ON a.processor = d.processor AND a.subject_id = d.subject_id
WHERE d.subject_id = :s
ORDER BY d.processor, d.sequence DESC, d.created_at DESC
""")

FOR_EVENT = text("""
SELECT processor, status, attempts, last_error, response_code, delivered_at, updated_at
FROM propagation_receipts WHERE event_id = :e ORDER BY processor
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
