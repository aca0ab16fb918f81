"""The parked-records table (``parked_records``): records intake could not use, kept whole
so an operator can retry them (after a fix) or drop them."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

import asyncpg

from propagator.parking import Headers, ParkedRecord, headers_from_json, headers_json
from propagator.repositories.rows import build

PARK = """
INSERT INTO parked_records (topic, partition, "offset", key, value, headers, reason)
SELECT * FROM unnest($1::text[], $2::int[], $3::bigint[], $4::bytea[], $5::bytea[],
                     $6::jsonb[], $7::text[])
ON CONFLICT (topic, partition, "offset") DO NOTHING
"""
DUE_RETRIES = """
SELECT id, topic, partition, "offset", key, value, headers FROM parked_records
WHERE retry_requested_at IS NOT NULL ORDER BY id LIMIT $1 FOR UPDATE SKIP LOCKED
"""
STILL_PARKED = """
UPDATE parked_records SET retry_requested_at = NULL, attempts = attempts + 1, reason = $2
WHERE id = $1
"""
LIST = """
SELECT id, topic, partition, "offset", reason, parked_at, retry_requested_at, attempts
FROM parked_records WHERE id > $1 ORDER BY id LIMIT $2
"""
REQUEST_RETRY = "UPDATE parked_records SET retry_requested_at = now() WHERE id = $1 RETURNING id"
DROP = 'DELETE FROM parked_records WHERE id = $1 RETURNING topic, partition, "offset"'


@dataclass(frozen=True, slots=True)
class DueRetry:
    """A parked record an operator asked to retry, whole, to feed through intake again."""

    id: int
    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    headers: Headers


@dataclass(frozen=True, slots=True)
class ParkedView:
    """A parked record as operators see it (without its key, value and headers)."""

    id: int
    topic: str
    partition: int
    offset: int
    reason: str
    parked_at: datetime
    retry_requested_at: datetime | None
    attempts: int


@dataclass(frozen=True, slots=True)
class ParkedPosition:
    """Where a dropped record was: what the drop is audited with."""

    topic: str
    partition: int
    offset: int


class ParkedRepository:
    def __init__(self, conn: asyncpg.Connection) -> None:
        self.conn = conn

    async def park(self, records: Sequence[ParkedRecord]) -> None:
        """Keep ``records``; one already parked (same topic, partition, offset) stays as is."""
        if not records:
            return
        await self.conn.execute(
            PARK,
            [r.topic for r in records],
            [r.partition for r in records],
            [r.offset for r in records],
            [r.key for r in records],
            [r.value for r in records],
            [headers_json(r.headers) for r in records],
            [r.reason for r in records],
        )

    async def due_retries(self, limit: int) -> list[DueRetry]:
        """Records an operator asked to retry, locked for this unit of work."""
        return [
            DueRetry(
                id=r["id"],
                topic=r["topic"],
                partition=r["partition"],
                offset=r["offset"],
                key=r["key"],
                value=r["value"],
                headers=headers_from_json(r["headers"]),
            )
            for r in await self.conn.fetch(DUE_RETRIES, limit)
        ]

    async def resolve(self, parked_id: int) -> None:
        """A retried record intake could use: it leaves the table."""
        await self.conn.execute("DELETE FROM parked_records WHERE id = $1", parked_id)

    async def still_parked(self, parked_id: int, reason: str) -> None:
        """A retried record still unusable: it stays, with its new reason."""
        await self.conn.execute(STILL_PARKED, parked_id, reason)

    async def page(self, after: int, limit: int) -> list[ParkedView]:
        return [build(ParkedView, r) for r in await self.conn.fetch(LIST, after, limit)]

    async def count(self) -> int:
        return int(await self.conn.fetchval("SELECT count(*) FROM parked_records"))

    async def request_retry(self, parked_id: int) -> bool:
        """Intake feeds it again within about a second; False when there is no such record."""
        return await self.conn.fetchval(REQUEST_RETRY, parked_id) is not None

    async def drop(self, parked_id: int) -> ParkedPosition | None:
        row = await self.conn.fetchrow(DROP, parked_id)
        return build(ParkedPosition, row) if row else None
