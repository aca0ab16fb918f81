"""Delivery ledger queries (the propagator's repository). Callers own transactions."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import Any

import asyncpg
import orjson

INBOX_INSERT = """
INSERT INTO propagator_inbox (event_id, topic, partition, "offset")
SELECT * FROM unnest($1::text[], $2::text[], $3::int[], $4::bigint[])
ON CONFLICT DO NOTHING RETURNING event_id
"""

DELIVERY_INSERT = """
INSERT INTO deliveries (id, event_id, event_type, subject_id, sequence, processor, status,
    attempts, max_attempts, payload, occurred_at, next_attempt_at, replay, created_at, updated_at)
SELECT u.id, u.event_id, u.event_type, u.subject_id, u.sequence, u.processor, 'pending', 0,
    u.max_attempts, u.payload::jsonb, u.occurred_at, now(), u.replay, now(), now()
FROM unnest($1::uuid[], $2::text[], $3::text[], $4::text[], $5::bigint[], $6::text[],
            $7::int[], $8::text[], $9::timestamptz[], $10::bool[])
    AS u(id, event_id, event_type, subject_id, sequence, processor, max_attempts, payload,
         occurred_at, replay)
ON CONFLICT (event_id, processor) DO NOTHING
"""

# An older pending delivery not currently in flight is superseded by a newer one:
# the newer carries the full decisions.
SUPERSEDE_OLDER = """
UPDATE deliveries d SET status = 'superseded', updated_at = now(),
    last_error = 'superseded by a newer event'
FROM unnest($1::text[], $2::text[], $3::bigint[]) AS n(processor, subject_id, sequence)
WHERE d.processor = n.processor AND d.subject_id = n.subject_id AND d.sequence < n.sequence
  AND d.status = 'pending' AND NOT d.replay AND (d.lease_until IS NULL OR d.lease_until < now())
  AND d.event_type <> 'subject.erasure_requested'
"""

CLAIM = """
UPDATE deliveries SET lease_until = now() + make_interval(secs => $3),
    attempts = attempts + 1, updated_at = now()
WHERE id IN (
    SELECT d.id FROM deliveries d
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
    ORDER BY d.next_attempt_at, d.sequence
    LIMIT $2 FOR UPDATE SKIP LOCKED)
RETURNING id, event_id, event_type, subject_id, sequence, processor, attempts, max_attempts,
    payload::text AS payload, occurred_at, replay
"""

ALREADY_APPLIED = """
SELECT d.id FROM deliveries d JOIN processor_receipts r
  ON r.processor = d.processor AND r.subject_id = d.subject_id
WHERE d.id = ANY($1::uuid[]) AND d.event_type <> 'subject.erasure_requested'
  AND ((NOT d.replay AND r.last_delivered_sequence >= d.sequence)
       OR (d.replay AND r.last_delivered_sequence > d.sequence))
"""


class DeliveryStore:
    def __init__(self, pool: asyncpg.Pool) -> None:
        self.pool = pool

    async def record_intake(
        self,
        conn: asyncpg.Connection,
        seen: Sequence[tuple[str, str, int, int]],
        deliveries: Sequence[dict[str, Any]],
    ) -> set[str]:
        """Insert inbox rows; return the event ids not seen before."""
        if not seen:
            return set()
        cols = list(zip(*seen, strict=True))
        rows = await conn.fetch(INBOX_INSERT, *[list(c) for c in cols])
        return {r["event_id"] for r in rows}

    async def add_deliveries(
        self, conn: asyncpg.Connection, deliveries: Sequence[dict[str, Any]]
    ) -> None:
        if not deliveries:
            return
        await conn.execute(
            DELIVERY_INSERT,
            [d.get("id") or uuid.uuid4() for d in deliveries],
            [d["event_id"] for d in deliveries],
            [d["event_type"] for d in deliveries],
            [d["subject_id"] for d in deliveries],
            [d["sequence"] for d in deliveries],
            [d["processor"] for d in deliveries],
            [d["max_attempts"] for d in deliveries],
            [orjson.dumps(d["payload"]).decode() for d in deliveries],
            [d["occurred_at"] for d in deliveries],
            [bool(d.get("replay")) for d in deliveries],
        )
        fresh = [d for d in deliveries if not d.get("replay")]
        if fresh:
            await conn.execute(
                SUPERSEDE_OLDER,
                [d["processor"] for d in fresh],
                [d["subject_id"] for d in fresh],
                [d["sequence"] for d in fresh],
            )

    async def claim(self, processor: str, limit: int, lease_s: float) -> list[asyncpg.Record]:
        async with self.pool.acquire() as conn, conn.transaction():
            rows = await conn.fetch(CLAIM, processor, limit, lease_s)
            if not rows:
                return []
            stale = {r["id"] for r in await conn.fetch(ALREADY_APPLIED, [r["id"] for r in rows])}
            if stale:
                await conn.execute(
                    "UPDATE deliveries SET status='superseded', lease_until=NULL, "
                    "updated_at=now(), last_error='a newer event was already applied' "
                    "WHERE id = ANY($1::uuid[])",
                    list(stale),
                )
            return [r for r in rows if r["id"] not in stale]

    async def mark_delivered(
        self, conn: asyncpg.Connection, done: Sequence[tuple[asyncpg.Record, int | None, float]]
    ) -> None:
        """A batch of 2xx answers: (row, response code, latency) each; two statements in all.
        The receipt keeps the highest sequence delivered per subject."""
        if not done:
            return
        await conn.execute(
            "UPDATE deliveries d SET status='delivered', lease_until=NULL, delivered_at=now(), "
            "updated_at=now(), response_code=u.code, latency_ms=u.latency, last_error=NULL "
            "FROM unnest($1::uuid[], $2::int[], $3::float8[]) AS u(id, code, latency) "
            "WHERE d.id = u.id",
            [r["id"] for r, _, _ in done],
            [code for _, code, _ in done],
            [latency for _, _, latency in done],
        )
        latest: dict[tuple[str, str], asyncpg.Record] = {}
        for r, _, _ in done:  # one row per receipt: an upsert may not touch a row twice
            key = (r["processor"], r["subject_id"])
            if key not in latest or latest[key]["sequence"] < r["sequence"]:
                latest[key] = r
        rows = list(latest.values())
        await conn.execute(
            """INSERT INTO processor_receipts (processor, subject_id, last_delivered_sequence,
                   last_event_id, delivered_at)
               SELECT * , now() FROM unnest($1::text[], $2::text[], $3::bigint[], $4::text[])
               ON CONFLICT (processor, subject_id) DO UPDATE SET
                   last_delivered_sequence = EXCLUDED.last_delivered_sequence,
                   last_event_id = EXCLUDED.last_event_id, delivered_at = now()
               WHERE processor_receipts.last_delivered_sequence
                   <= EXCLUDED.last_delivered_sequence""",
            [r["processor"] for r in rows],
            [r["subject_id"] for r in rows],
            [r["sequence"] for r in rows],
            [r["event_id"] for r in rows],
        )

    async def newer_exists(self, conn: asyncpg.Connection, row: asyncpg.Record) -> bool:
        return bool(
            await conn.fetchval(
                "SELECT $4 <> 'subject.erasure_requested' AND EXISTS (SELECT 1 FROM deliveries "
                "WHERE processor=$1 AND subject_id=$2 "
                "AND sequence > $3 AND status IN ('pending','delivered') AND NOT replay)",
                row["processor"],
                row["subject_id"],
                row["sequence"],
                row["event_type"],
            )
        )

    async def reschedule(
        self,
        conn: asyncpg.Connection,
        row: asyncpg.Record,
        delay_s: float,
        code: int | None,
        error: str,
        latency_ms: float,
    ) -> None:
        await conn.execute(
            "UPDATE deliveries SET lease_until=NULL, updated_at=now(), response_code=$2, "
            "last_error=$3, latency_ms=$4, next_attempt_at=now() + make_interval(secs => $5) "
            "WHERE id=$1",
            row["id"],
            code,
            error,
            latency_ms,
            delay_s,
        )

    async def finish(
        self,
        conn: asyncpg.Connection,
        row: asyncpg.Record,
        status: str,
        code: int | None,
        error: str,
        latency_ms: float | None,
    ) -> None:
        await conn.execute(
            "UPDATE deliveries SET status=$2, lease_until=NULL, updated_at=now(), "
            "response_code=$3, last_error=$4, latency_ms=$5 WHERE id=$1",
            row["id"],
            status,
            code,
            error,
            latency_ms,
        )

    async def dead_letter(
        self, conn: asyncpg.Connection, row: asyncpg.Record, error: str, code: int | None
    ) -> None:
        """Copy a dead delivery to the outbox; the relay publishes it to the dead-letter topic."""
        payload = {
            "delivery_id": str(row["id"]),
            "event_id": row["event_id"],
            "event_type": row["event_type"],
            "subject_id": row["subject_id"],
            "sequence": row["sequence"],
            "processor": row["processor"],
            "attempts": row["attempts"],
            "last_error": error,
            "response_code": code,
        }
        await conn.execute(
            "INSERT INTO outbox (id, aggregatetype, aggregateid, type, payload, sequence, "
            "occurred_at) VALUES ($1, 'delivery', $2, 'delivery.dead', $3::jsonb, $4, now())",
            uuid.uuid4(),
            row["subject_id"],
            orjson.dumps(payload).decode(),
            row["sequence"],
        )

    async def probe_exhausted(self, processor: str) -> bool:
        """Give one delivery that died of an exhausted retry budget a single new attempt."""
        async with self.pool.acquire() as conn:
            probed = await conn.fetchval(
                "UPDATE deliveries SET status = 'pending', attempts = max_attempts - 1, "
                "next_attempt_at = now(), updated_at = now() WHERE id = ("
                "SELECT id FROM deliveries WHERE processor = $1 AND status = 'dead' "
                "AND last_error LIKE 'gave up after%' ORDER BY updated_at LIMIT 1) RETURNING id",
                processor,
            )
            return probed is not None

    async def redrive_exhausted(self, conn: asyncpg.Connection, processor: str) -> int:
        """The processor answers again: its exhausted deliveries get a fresh budget (audited).
        Permanent failures (4xx) stay dead for an operator."""
        rows = await conn.fetch(
            "UPDATE deliveries SET status = 'pending', attempts = 0, next_attempt_at = now(), "
            "updated_at = now() WHERE processor = $1 AND status = 'dead' "
            "AND last_error LIKE 'gave up after%' RETURNING id",
            processor,
        )
        if rows:
            await conn.execute(
                "INSERT INTO audit_log (actor, action, scope, counts) VALUES "
                "('propagator', 'delivery.auto_redrive', $1::jsonb, $2::jsonb)",
                orjson.dumps({"processor": processor}).decode(),
                orjson.dumps({"redriven": len(rows)}).decode(),
            )
        return len(rows)
