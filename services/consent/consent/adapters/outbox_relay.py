"""The relay's statements on the outbox, on the relay's own long-lived connection (not a
unit of work: it holds the leader lock and LISTENs between batches, and each statement
commits on its own; a row published twice is harmless, consumers dedupe on its id)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from typing import Any
from uuid import UUID

import asyncpg

from consent_common.db import connect_durable

RELAY_LOCK_KEY = 0x636F6E73656E74  # "consent"
BACKLOG_SQL = """
SELECT count(*) AS n, coalesce(extract(epoch FROM now() - min(created_at)), 0) AS age
FROM outbox WHERE published_at IS NULL
"""
CLEANUP = "DELETE FROM outbox WHERE published_at < now() - make_interval(hours => $1)"
# A parked row (one the broker or the encoder refuses) holds back its own subject's later
# rows, to keep that subject's order, and nobody else's.
FETCH = """
SELECT id, aggregatetype, aggregateid, type, payload::text AS payload, sequence, occurred_at,
    targets, traceparent
FROM outbox o WHERE published_at IS NULL AND parked_at IS NULL
  AND NOT EXISTS (SELECT 1 FROM outbox p WHERE p.aggregateid = o.aggregateid
                  AND p.parked_at IS NOT NULL AND p.published_at IS NULL)
ORDER BY position LIMIT $1
"""
MARK_PUBLISHED = "UPDATE outbox SET published_at = now() WHERE id = ANY($1::uuid[])"
PARK = "UPDATE outbox SET parked_at = now(), last_error = $2 WHERE id = $1"
# consentctl outbox status: the relay is found by its connection's application_name
STATUS_SQL = """
SELECT
  count(*) FILTER (WHERE published_at IS NULL) AS backlog,
  coalesce(extract(epoch FROM now() - min(created_at) FILTER (WHERE published_at IS NULL)), 0)
      AS oldest_s,
  count(*) FILTER (WHERE published_at > now() - interval '1 minute') AS last_minute,
  count(*) FILTER (WHERE published_at > now() - interval '1 hour') AS last_hour,
  max(published_at) AS last_published
FROM outbox
"""
LEADER_SQL = """
SELECT a.application_name FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid
WHERE l.locktype = 'advisory' AND l.granted AND a.application_name LIKE 'consent-relay:%'
"""


class RelayOutbox:
    """One relay's connection and what it runs on it."""

    def __init__(self, conn: asyncpg.Connection) -> None:
        self.conn = conn

    @classmethod
    async def connect(cls, database_url: str, name: str) -> RelayOutbox:
        return cls(await connect_durable(database_url, f"consent-relay:{name}"))

    async def try_lead(self) -> bool:
        """Take the relay's session-level leader lock if it is free."""
        return bool(await self.conn.fetchval("SELECT pg_try_advisory_lock($1)", RELAY_LOCK_KEY))

    async def on_commit(self, wake: Callable[[], Any]) -> None:
        """Call ``wake`` whenever a transaction that wrote outbox rows commits."""
        await self.conn.add_listener("outbox", lambda *_: wake())

    async def next_rows(self, limit: int) -> list[asyncpg.Record]:
        """The next unpublished rows in outbox order, skipping subjects held by a park."""
        rows: list[asyncpg.Record] = await self.conn.fetch(FETCH, limit)
        return rows

    async def mark_published(self, ids: Sequence[UUID]) -> None:
        await self.conn.execute(MARK_PUBLISHED, list(ids))

    async def park(self, row_id: UUID, error: str) -> None:
        await self.conn.execute(PARK, row_id, error)

    async def backlog(self) -> tuple[int, float]:
        """Unpublished rows and the age in seconds of the oldest."""
        row = await self.conn.fetchrow(BACKLOG_SQL)
        assert row is not None
        return int(row["n"]), float(row["age"])

    async def clean_up(self, retention_hours: float) -> None:
        """Drop rows published longer ago than the retention."""
        await self.conn.execute(CLEANUP, retention_hours)

    async def close(self) -> None:
        await asyncio.wait_for(self.conn.close(), 2)


async def outbox_status(conn: asyncpg.Connection) -> dict[str, Any]:
    """Backlog, age, publish rate and the active relay (``consentctl outbox status``), on
    an operator's connection."""
    row = await conn.fetchrow(STATUS_SQL)
    assert row is not None
    return {**dict(row), "leader": await conn.fetchval(LEADER_SQL)}
