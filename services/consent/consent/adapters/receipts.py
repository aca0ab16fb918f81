"""The consent service's read model of propagation, for receipts in the API.

Projected from ``consent.receipts.v1`` (``service/receipts.py``): the propagator reports each
change of a live delivery, and what each processor acknowledged. How stale it may be: see
``docs/operations.md`` ("Propagation receipts")."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from consent.adapters.audit import AuditRecord, write_audit
from consent.adapters.db import driver

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

# the projector's statements (bulk: raw on the session's connection, see adapters/__init__)
UPSERT_RECEIPT = """
INSERT INTO propagation_receipts (delivery_id, event_id, event_type, subject_id, sequence,
    processor, status, attempts, last_error, response_code, created_at, updated_at,
    delivered_at, projected_at)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, now())
ON CONFLICT (delivery_id) DO UPDATE SET status = EXCLUDED.status,
    attempts = EXCLUDED.attempts, last_error = EXCLUDED.last_error,
    response_code = EXCLUDED.response_code, updated_at = EXCLUDED.updated_at,
    delivered_at = EXCLUDED.delivered_at, projected_at = now()
WHERE propagation_receipts.updated_at <= EXCLUDED.updated_at
"""
UPSERT_ACK = """
INSERT INTO processor_acks (processor, subject_id, last_delivered_sequence, last_event_id,
    delivered_at, decisions, event_type)
VALUES ($1, $2, $3, $4, $5, $6::text::jsonb, $7)
ON CONFLICT (processor, subject_id) DO UPDATE SET
    last_delivered_sequence = EXCLUDED.last_delivered_sequence,
    last_event_id = EXCLUDED.last_event_id, delivered_at = EXCLUDED.delivered_at,
    decisions = EXCLUDED.decisions, event_type = EXCLUDED.event_type
WHERE processor_acks.last_delivered_sequence < EXCLUDED.last_delivered_sequence
   OR (processor_acks.last_delivered_sequence = EXCLUDED.last_delivered_sequence
       AND (processor_acks.delivered_at IS NULL OR EXCLUDED.delivered_at IS NULL
            OR processor_acks.delivered_at <= EXCLUDED.delivered_at))
"""
SAVE_OFFSET = """
INSERT INTO receipt_offsets (topic, partition, next_offset) VALUES ($1, $2, $3)
ON CONFLICT (topic, partition) DO UPDATE SET next_offset = EXCLUDED.next_offset
"""
LOAD_OFFSETS = "SELECT partition, next_offset FROM receipt_offsets WHERE topic = $1"


class ReceiptRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def per_processor(self, subject_id: str) -> list[dict[str, Any]]:
        rows = await self.session.execute(PER_PROCESSOR, {"s": subject_id})
        return [dict(r._mapping) for r in rows]

    async def for_event(self, event_id: str) -> list[dict[str, Any]]:
        rows = await self.session.execute(FOR_EVENT, {"e": event_id})
        return [dict(r._mapping) for r in rows]

    async def saved_offsets(self, topic: str) -> dict[int, int]:
        """partition → the next offset to read, as the last projection stored it."""
        rows = await (await driver(self.session)).fetch(LOAD_OFFSETS, topic)
        return {r[0]: r[1] for r in rows}

    async def project(
        self,
        receipts: Sequence[tuple[Any, ...]],
        acks: Sequence[tuple[Any, ...]],
        audits: Sequence[AuditRecord],
        offsets: Sequence[tuple[str, int, int]],
    ) -> None:
        """One batch of the topic, with the offsets it ends at (same transaction: each
        record is applied once). Rows are in ``UPSERT_RECEIPT``'s and ``UPSERT_ACK``'s order."""
        raw = await driver(self.session)
        if receipts:
            await raw.executemany(UPSERT_RECEIPT, receipts)
        if acks:
            await raw.executemany(UPSERT_ACK, acks)
        await write_audit(raw, audits)
        await raw.executemany(SAVE_OFFSET, offsets)
