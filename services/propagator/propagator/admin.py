"""The propagator's answers to operators: deliveries (list, redrive) and parked records (list,
retry, drop). Used by its HTTP API (``propagator.api``) and by ``consentctl``; the consent
service's admin endpoints forward to the HTTP API. Callers own connections; every query
names only the propagator's own tables."""

from __future__ import annotations

import uuid
from typing import Any

import asyncpg

LIST_DELIVERIES = """
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
LIST_PARKED = """
SELECT id, topic, partition, "offset", reason, parked_at, retry_requested_at, attempts
FROM parked_records WHERE id > $1 ORDER BY id LIMIT $2
"""
RETRY_PARKED = "UPDATE parked_records SET retry_requested_at = now() WHERE id = $1 RETURNING id"
DROP_PARKED = 'DELETE FROM parked_records WHERE id = $1 RETURNING topic, partition, "offset"'
COUNT_PARKED = "SELECT count(*) FROM parked_records"


async def deliveries(
    conn: asyncpg.Connection,
    status: str | None,
    processor: str | None,
    after: uuid.UUID | None,
    limit: int,
) -> list[dict[str, Any]]:
    rows = await conn.fetch(LIST_DELIVERIES, status, processor, after, limit)
    return [dict(r) for r in rows]


async def redrive(
    conn: asyncpg.Connection, ids: list[uuid.UUID] | None, processor: str | None
) -> list[str]:
    """Dead deliveries back to pending, with a fresh attempt budget; the workers are woken
    (``NOTIFY deliveries``) when the caller's transaction commits."""
    rows = await conn.fetch(REDRIVE, ids, processor)
    if rows:
        await conn.execute("SELECT pg_notify('deliveries', '')")
    return [str(r[0]) for r in rows]


async def parked(conn: asyncpg.Connection, after: int, limit: int) -> list[dict[str, Any]]:
    return [dict(r) for r in await conn.fetch(LIST_PARKED, after, limit)]


async def parked_count(conn: asyncpg.Connection) -> int:
    return int(await conn.fetchval(COUNT_PARKED))


async def request_retry(conn: asyncpg.Connection, parked_id: int) -> bool:
    """Intake feeds it again within about a second."""
    return await conn.fetchval(RETRY_PARKED, parked_id) is not None


async def drop(conn: asyncpg.Connection, parked_id: int) -> dict[str, Any] | None:
    row = await conn.fetchrow(DROP_PARKED, parked_id)
    return dict(row) if row else None
