"""Intake's statement (``propagator_inbox`` and new ``deliveries``): the events a polled
batch brings are written once, however often Kafka hands them over."""

from __future__ import annotations

from collections.abc import Sequence

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


class InboxRepository:
    def __init__(self, conn: asyncpg.Connection) -> None:
        self.conn = conn

    async def record_intake(
        self, seen: Sequence[tuple[str, str, int, int]], deliveries: Sequence[DeliveryIntent]
    ) -> int:
        """Inbox rows for ``seen`` (event id, topic, partition, offset) and ``deliveries`` for
        the events not seen before, in one statement. Returns the pending deliveries added."""
        if not seen:
            return 0
        stale = superseded_in_batch(deliveries)
        d = deliveries
        return int(
            await self.conn.fetchval(
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
