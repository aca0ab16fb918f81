"""Delivery ledger queries (the propagator's repository). Callers own transactions."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import asyncpg
import orjson

from propagator.intents import DeliveryIntent, superseded_in_batch

# One statement per polled batch: the inbox drops events seen before, and only the new ones
# get deliveries. An older pending delivery not in flight is superseded by a newer one (the
# newer carries the full decisions); within the batch, Python marks the older ones already.
# (Rows a statement inserts are invisible to its own UPDATE, so the UPDATE sees only older.)
INTAKE = """
WITH inbox AS (
    INSERT INTO propagator_inbox (event_id, topic, partition, "offset")
    SELECT * FROM unnest($1::text[], $2::text[], $3::int[], $4::bigint[])
    ON CONFLICT DO NOTHING RETURNING event_id
), added AS (
    INSERT INTO deliveries (id, event_id, event_type, subject_id, sequence, processor, status,
        attempts, max_attempts, payload, occurred_at, next_attempt_at, replay, created_at,
        updated_at, last_error, traceparent)
    SELECT u.id, u.event_id, u.event_type, u.subject_id, u.sequence, u.processor, u.status, 0,
        u.max_attempts, u.payload::jsonb, u.occurred_at, now(), u.replay, now(), now(),
        CASE WHEN u.status = 'superseded' THEN 'superseded by a newer event' END, u.traceparent
    FROM unnest($5::uuid[], $6::text[], $7::text[], $8::text[], $9::bigint[], $10::text[],
                $11::int[], $12::text[], $13::timestamptz[], $14::bool[], $15::text[],
                $16::text[])
        AS u(id, event_id, event_type, subject_id, sequence, processor, max_attempts, payload,
             occurred_at, replay, status, traceparent)
    WHERE u.event_id IN (SELECT event_id FROM inbox)
    ON CONFLICT (event_id, processor) DO NOTHING
    RETURNING processor, subject_id, sequence, replay, status
), superseded AS (
    UPDATE deliveries d SET status = 'superseded', updated_at = now(),
        last_error = 'superseded by a newer event'
    FROM (SELECT processor, subject_id, max(sequence) AS sequence FROM added
          WHERE NOT replay AND status = 'pending' GROUP BY processor, subject_id) AS n
    WHERE d.processor = n.processor AND d.subject_id = n.subject_id AND d.sequence < n.sequence
      AND d.status = 'pending' AND NOT d.replay
      AND (d.lease_until IS NULL OR d.lease_until < now())
      AND d.event_type <> 'subject.erasure_requested'
)
SELECT count(*) FILTER (WHERE status = 'pending') FROM added
"""

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


class DeliveryStore:
    def __init__(self, pool: asyncpg.Pool) -> None:
        self.pool = pool

    async def record_intake(
        self,
        conn: asyncpg.Connection,
        seen: Sequence[tuple[str, str, int, int]],
        deliveries: Sequence[DeliveryIntent],
    ) -> int:
        """Inbox rows for ``seen`` (event id, topic, partition, offset) and ``deliveries`` for
        the events not seen before, in one statement. Returns the pending deliveries added."""
        if not seen:
            return 0
        stale = superseded_in_batch(deliveries)
        d = deliveries
        return int(
            await conn.fetchval(
                INTAKE,
                *[list(c) for c in zip(*seen, strict=True)],
                [x.id for x in d],
                [x.event_id for x in d],
                [x.event_type for x in d],
                [x.subject_id for x in d],
                [x.sequence for x in d],
                [x.processor for x in d],
                [x.max_attempts for x in d],
                [orjson.dumps(x.payload).decode() for x in d],
                [x.occurred_at for x in d],
                [x.replay for x in d],
                ["superseded" if i in stale else "pending" for i in range(len(d))],
                [x.traceparent for x in d],
            )
        )

    async def claim(self, processor: str, limit: int, lease_s: float) -> list[asyncpg.Record]:
        async with self.pool.acquire() as conn:
            rows = await conn.fetch(CLAIM, processor, limit, lease_s)
        return [r for r in rows if not r["stale"]]

    async def mark_delivered(
        self, conn: asyncpg.Connection, done: Sequence[tuple[asyncpg.Record, int | None, float]]
    ) -> None:
        """A batch of 2xx answers: (row, response code, latency) each."""
        if done:
            await conn.execute(
                DELIVERED,
                [r["id"] for r, _, _ in done],
                [code for _, code, _ in done],
                [latency for _, _, latency in done],
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
        """Queue a dead delivery in the propagator's outbox, for the dead-letter topic."""
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
        await queue(
            conn, "deadletter", row["subject_id"], "delivery.dead", payload, row["sequence"]
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
            await audit(
                conn,
                "propagator",
                "delivery.auto_redrive",
                {"processor": processor},
                {"redriven": len(rows)},
            )
        return len(rows)


async def queue(
    conn: asyncpg.Connection,
    kind: str,
    key: str,
    type_: str,
    payload: dict[str, Any],
    sequence: int | None = None,
) -> None:
    """A row for the propagator's outbox (published by ``publisher.OutboxPublisher``), in the
    caller's transaction."""
    await conn.execute(
        "INSERT INTO propagator_outbox (kind, key, type, payload, sequence) "
        "VALUES ($1, $2, $3, $4::jsonb, $5)",
        kind,
        key,
        type_,
        orjson.dumps(payload).decode(),
        sequence,
    )
    await conn.execute("SELECT pg_notify('propagator_outbox', '')")


async def audit(
    conn: asyncpg.Connection,
    actor: str,
    action: str,
    scope: dict[str, Any],
    counts: dict[str, Any],
    reference: str | None = None,
) -> None:
    """An action the propagator took, for the one audit timeline: published as
    ``audit.recorded`` on the receipts topic, which the consent service's audit log
    projects (``consentctl audit``, ``GET /v1/admin/audit``)."""
    await queue(
        conn,
        "audit",
        "audit",
        "audit.recorded",
        {
            "id": str(uuid.uuid4()),
            "actor": actor,
            "action": action,
            "scope": scope,
            "counts": counts,
            "reference": reference,
            "at": datetime.now(UTC).isoformat(),
        },
    )
