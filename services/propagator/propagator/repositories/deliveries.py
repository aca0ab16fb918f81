"""The ``deliveries`` table: the workers claim what is due and record each outcome
(delivered with its receipt, retried, superseded, dead); what died of an exhausted retry
budget is redriven; operators list deliveries and redrive dead ones."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import asyncpg

from propagator.repositories.rows import build

# Claiming is one statement (atomic alone: no BEGIN/COMMIT round trips). A picked delivery
# whose processor already has this or a newer sequence (a replay or a redrive of something
# applied since) is marked superseded by the same statement instead of leased.
CLAIM = """
WITH picked AS (
    SELECT d.id, (d.event_type <> 'subject.erasure_requested' AND EXISTS (
            SELECT 1 FROM processor_receipts r
            WHERE r.processor = d.processor AND r.subject_id = d.subject_id
              AND ((NOT d.replay AND r.last_delivered_sequence >= d.sequence)
                   OR (d.replay AND r.last_delivered_sequence > d.sequence)))) AS stale
    FROM deliveries d
    WHERE d.processor = $1 AND d.status = 'pending' AND d.next_attempt_at <= now()
      AND (d.lease_until IS NULL OR d.lease_until < now())
      AND NOT EXISTS (
          SELECT 1 FROM deliveries o
          WHERE o.processor = d.processor AND o.subject_id = d.subject_id
            AND o.status = 'pending' AND o.sequence < d.sequence)
      AND NOT EXISTS (  -- a newer one in flight: a redriven old delivery waits for it
          SELECT 1 FROM deliveries n
          WHERE n.processor = d.processor AND n.subject_id = d.subject_id
            AND n.status = 'pending' AND n.sequence > d.sequence AND n.lease_until > now())
    ORDER BY d.next_attempt_at  -- the due index's order: no sort of every pending row
    LIMIT $2 FOR UPDATE SKIP LOCKED
)
UPDATE deliveries u SET attempts = u.attempts + 1, updated_at = now(),
    lease_until = CASE WHEN p.stale THEN NULL ELSE now() + make_interval(secs => $3) END,
    status = CASE WHEN p.stale THEN 'superseded' ELSE u.status END,
    last_error = CASE WHEN p.stale THEN 'a newer event was already applied'
                      ELSE u.last_error END
FROM picked p WHERE u.id = p.id
RETURNING u.id, u.event_id, u.event_type, u.subject_id, u.sequence, u.processor, u.attempts,
    u.max_attempts, u.payload::text AS payload, u.occurred_at, u.replay, u.traceparent, p.stale
"""

# 2xx answers: the deliveries and their receipts in one statement (atomic alone). The receipt
# keeps the highest sequence delivered per subject.
DELIVERED = """
WITH done AS (
    UPDATE deliveries d SET status = 'delivered', lease_until = NULL, delivered_at = now(),
        updated_at = now(), response_code = u.code, latency_ms = u.latency, last_error = NULL
    FROM unnest($1::uuid[], $2::int[], $3::float8[]) AS u(id, code, latency)
    WHERE d.id = u.id
    RETURNING d.processor, d.subject_id, d.sequence, d.event_id
)
INSERT INTO processor_receipts (processor, subject_id, last_delivered_sequence, last_event_id,
    delivered_at)
SELECT DISTINCT ON (processor, subject_id) processor, subject_id, sequence, event_id, now()
FROM done ORDER BY processor, subject_id, sequence DESC
ON CONFLICT (processor, subject_id) DO UPDATE SET
    last_delivered_sequence = EXCLUDED.last_delivered_sequence,
    last_event_id = EXCLUDED.last_event_id, delivered_at = now()
WHERE processor_receipts.last_delivered_sequence <= EXCLUDED.last_delivered_sequence
"""


NEWER_EXISTS = """
SELECT $4 <> 'subject.erasure_requested' AND EXISTS (SELECT 1 FROM deliveries
    WHERE processor = $1 AND subject_id = $2
      AND sequence > $3 AND status IN ('pending', 'delivered') AND NOT replay)
"""
RESCHEDULE = """
UPDATE deliveries SET lease_until = NULL, updated_at = now(), response_code = $2,
    last_error = $3, latency_ms = $4, next_attempt_at = now() + make_interval(secs => $5)
WHERE id = $1
"""
FINISH = """
UPDATE deliveries SET status = $2, lease_until = NULL, updated_at = now(),
    response_code = $3, last_error = $4, latency_ms = $5
WHERE id = $1
"""
EXHAUSTED = "status = 'dead' AND last_error LIKE 'gave up after%'"  # not a 4xx: a dead budget
PROBE_EXHAUSTED = f"""
UPDATE deliveries SET status = 'pending', attempts = max_attempts - 1,
    next_attempt_at = now(), updated_at = now()
WHERE id = (SELECT id FROM deliveries WHERE processor = $1 AND {EXHAUSTED}
            ORDER BY updated_at LIMIT 1)
RETURNING id
"""
REDRIVE_EXHAUSTED = f"""
UPDATE deliveries SET status = 'pending', attempts = 0, next_attempt_at = now(),
       lease_until = NULL, updated_at = now()
WHERE processor = $1 AND {EXHAUSTED}
RETURNING id
"""
LIST = """
SELECT id, event_id, event_type, subject_id, sequence, processor, status, attempts,
       last_error, response_code, replay, created_at, updated_at, delivered_at
FROM deliveries
WHERE ($1::text IS NULL OR status = $1) AND ($2::text IS NULL OR processor = $2)
  AND ($3::uuid IS NULL OR id > $3::uuid)
ORDER BY id LIMIT $4
"""
REDRIVE = """
UPDATE deliveries SET status = 'pending', attempts = 0, next_attempt_at = now(),
       lease_until = NULL, updated_at = now()
WHERE status = 'dead' AND ($1::uuid[] IS NULL OR id = ANY($1::uuid[]))
  AND ($2::text IS NULL OR processor = $2)
RETURNING id
"""


@dataclass(frozen=True, slots=True)
class ClaimedDelivery:
    """A delivery leased to this worker: the body to send (``payload``, JSON) and what its
    outcome is recorded against. ``attempts`` already counts this attempt."""

    id: uuid.UUID
    event_id: str
    event_type: str
    subject_id: str
    sequence: int
    processor: str
    attempts: int
    max_attempts: int
    payload: str
    occurred_at: datetime
    replay: bool
    traceparent: str | None

    def dead_letter(self, error: str, code: int | None) -> dict[str, Any]:
        """The body of its ``delivery.dead`` message on the dead-letter topic."""
        return {
            "delivery_id": str(self.id),
            "event_id": self.event_id,
            "event_type": self.event_type,
            "subject_id": self.subject_id,
            "sequence": self.sequence,
            "processor": self.processor,
            "attempts": self.attempts,
            "last_error": error,
            "response_code": code,
        }


@dataclass(frozen=True, slots=True)
class DeliveryView:
    """A delivery as operators see it (``GET /v1/deliveries``, ``consentctl deliveries``)."""

    id: uuid.UUID
    event_id: str
    event_type: str
    subject_id: str
    sequence: int
    processor: str
    status: str
    attempts: int
    last_error: str | None
    response_code: int | None
    replay: bool
    created_at: datetime
    updated_at: datetime
    delivered_at: datetime | None


class DeliveryRepository:
    def __init__(self, conn: asyncpg.Connection) -> None:
        self.conn = conn

    async def claim(self, processor: str, limit: int, lease_s: float) -> list[ClaimedDelivery]:
        """Lease up to ``limit`` due deliveries for ``lease_s``; those a newer applied event
        made pointless are marked superseded by the same statement and left out."""
        rows = await self.conn.fetch(CLAIM, processor, limit, lease_s)
        return [build(ClaimedDelivery, r) for r in rows if not r["stale"]]

    async def mark_delivered(
        self, done: Sequence[tuple[ClaimedDelivery, int | None, float]]
    ) -> None:
        """A batch of 2xx answers: (delivery, response code, latency) each."""
        if done:
            await self.conn.execute(
                DELIVERED,
                [d.id for d, _, _ in done],
                [code for _, code, _ in done],
                [latency for _, _, latency in done],
            )

    async def newer_exists(self, d: ClaimedDelivery) -> bool:
        """A newer live event for the same subject and processor makes retrying this one
        pointless (never so for an erasure)."""
        return bool(
            await self.conn.fetchval(
                NEWER_EXISTS, d.processor, d.subject_id, d.sequence, d.event_type
            )
        )

    async def reschedule(
        self, d: ClaimedDelivery, delay_s: float, code: int | None, error: str, latency_ms: float
    ) -> None:
        await self.conn.execute(RESCHEDULE, d.id, code, error, latency_ms, delay_s)

    async def finish(
        self,
        d: ClaimedDelivery,
        status: str,
        code: int | None,
        error: str,
        latency_ms: float | None,
    ) -> None:
        """A final status: ``superseded`` or ``dead``."""
        await self.conn.execute(FINISH, d.id, status, code, error, latency_ms)

    async def probe_exhausted(self, processor: str) -> bool:
        """Give one delivery that died of an exhausted retry budget a single new attempt."""
        return await self.conn.fetchval(PROBE_EXHAUSTED, processor) is not None

    async def redrive_exhausted(self, processor: str) -> int:
        """What died of an exhausted retry budget gets a fresh one; permanent failures
        (4xx) stay dead for an operator. Returns how many."""
        return len(await self.conn.fetch(REDRIVE_EXHAUSTED, processor))

    async def wake_workers(self) -> None:
        """``NOTIFY deliveries``, delivered when the unit of work commits: every replica's
        workers look for due deliveries at once."""
        await self.conn.execute("SELECT pg_notify('deliveries', '')")

    async def page(
        self, status: str | None, processor: str | None, after: uuid.UUID | None, limit: int
    ) -> list[DeliveryView]:
        """Deliveries by id after the cursor ``after``, optionally of one status/processor."""
        rows = await self.conn.fetch(LIST, status, processor, after, limit)
        return [build(DeliveryView, r) for r in rows]

    async def redrive(self, ids: list[uuid.UUID] | None, processor: str | None) -> list[str]:
        """Dead deliveries (these ``ids``, or all, of ``processor`` or any) back to pending
        with a fresh attempt budget; the workers are woken when the unit of work commits."""
        rows = await self.conn.fetch(REDRIVE, ids, processor)
        if rows:
            await self.wake_workers()
        return [str(r[0]) for r in rows]
