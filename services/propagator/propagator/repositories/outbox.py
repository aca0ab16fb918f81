"""The propagator's outbox (``propagator_outbox``): dead letters, delivery receipts and audit
entries queued in the writer's transaction, published by ``publisher.OutboxPublisher``."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import asyncpg
import orjson

from propagator.repositories.rows import build

QUEUE = """
INSERT INTO propagator_outbox (kind, key, type, payload, sequence)
VALUES ($1, $2, $3, $4::jsonb, $5)
"""
NEXT_BATCH = """
SELECT position, id, kind, key, type, payload::text AS payload, sequence, occurred_at
FROM propagator_outbox WHERE published_at IS NULL ORDER BY position
LIMIT $1 FOR UPDATE SKIP LOCKED
"""
MARK = "UPDATE propagator_outbox SET published_at = now() WHERE position = ANY($1::bigint[])"
PURGE = """
DELETE FROM propagator_outbox WHERE position IN (
    SELECT position FROM propagator_outbox
    WHERE published_at < now() - make_interval(hours => $1) LIMIT 5000)
"""


@dataclass(frozen=True, slots=True)
class OutboxMessage:
    """One row to publish: ``kind`` picks the topic, ``payload`` is the JSON body."""

    position: int
    id: uuid.UUID
    kind: str
    key: str
    type: str
    payload: str
    sequence: int | None
    occurred_at: datetime


class OutboxRepository:
    def __init__(self, conn: asyncpg.Connection) -> None:
        self.conn = conn

    async def queue(
        self,
        kind: str,
        key: str,
        type_: str,
        payload: dict[str, Any],
        sequence: int | None = None,
    ) -> None:
        """A row to publish once the unit of work commits (NOTIFY wakes the publisher)."""
        await self.conn.execute(QUEUE, kind, key, type_, orjson.dumps(payload).decode(), sequence)
        await self.conn.execute("SELECT pg_notify('propagator_outbox', '')")

    async def audit(
        self,
        actor: str,
        action: str,
        scope: dict[str, Any],
        counts: dict[str, Any],
        reference: str | None = None,
    ) -> None:
        """An action the propagator took, for the one audit timeline: published as
        ``audit.recorded`` on the receipts topic, which the consent service's audit log
        projects (``consentctl audit``, ``GET /v1/admin/audit``)."""
        entry = {
            "id": str(uuid.uuid4()),
            "actor": actor,
            "action": action,
            "scope": scope,
            "counts": counts,
            "reference": reference,
            "at": datetime.now(UTC).isoformat(),
        }
        await self.queue("audit", "audit", "audit.recorded", entry)

    async def next_batch(self, limit: int) -> list[OutboxMessage]:
        """The oldest unpublished rows, locked for this unit of work (replicas share)."""
        return [build(OutboxMessage, r) for r in await self.conn.fetch(NEXT_BATCH, limit)]

    async def mark_published(self, positions: list[int]) -> None:
        await self.conn.execute(MARK, positions)

    async def purge_published(self, older_than_hours: int) -> int:
        """At most 5000 rows published before the cutoff; returns how many went."""
        done: str = await self.conn.execute(PURGE, older_than_hours)
        return int(done.split()[-1])
