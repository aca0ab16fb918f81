"""Retention's statements: the inbox and the finished deliveries that are neither proof nor
state (the rules are in ``propagator/retention.py``), deleted in bounded batches."""

from __future__ import annotations

from datetime import datetime

import asyncpg

LOCK = "SELECT pg_try_advisory_lock(hashtext('propagator-retention'))"
UNLOCK = "SELECT pg_advisory_unlock(hashtext('propagator-retention'))"
INBOX = """
DELETE FROM propagator_inbox WHERE event_id IN (
    SELECT event_id FROM propagator_inbox WHERE received_at < $1 LIMIT $2)
"""
DELIVERIES = """
DELETE FROM deliveries WHERE id IN (
    SELECT d.id FROM deliveries d
    WHERE d.status IN ('delivered', 'superseded')
      AND d.created_at < $1
      AND d.event_type <> 'subject.erasure_requested'
      AND NOT EXISTS (SELECT 1 FROM processor_receipts r WHERE r.processor = d.processor
                      AND r.subject_id = d.subject_id AND r.last_event_id = d.event_id)
      AND EXISTS (SELECT 1 FROM deliveries n WHERE n.processor = d.processor
                  AND n.subject_id = d.subject_id
                  AND (n.sequence, n.created_at) > (d.sequence, d.created_at)
                  AND (d.replay OR NOT n.replay))
    LIMIT $2)
"""


class RetentionRepository:
    def __init__(self, conn: asyncpg.Connection) -> None:
        self.conn = conn

    async def try_lock(self) -> bool:
        """The round's advisory lock, on this connection's session (no transaction is held
        open while the batches run); False when another replica holds it."""
        return bool(await self.conn.fetchval(LOCK))

    async def unlock(self) -> None:
        await self.conn.fetchval(UNLOCK)

    async def purge_inbox(self, cutoff: datetime, limit: int) -> int:
        """At most ``limit`` inbox rows received before ``cutoff``; returns how many went."""
        return _count(await self.conn.execute(INBOX, cutoff, limit))

    async def purge_deliveries(self, cutoff: datetime, limit: int) -> int:
        """At most ``limit`` finished deliveries created before ``cutoff`` that are neither
        an erasure's, nor the one a receipt names, nor a subject's newest."""
        return _count(await self.conn.execute(DELIVERIES, cutoff, limit))


def _count(status: str) -> int:
    return int(status.split()[-1])
