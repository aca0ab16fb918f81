"""The parked-records table (owned by the propagator): records intake could not use, kept
whole so an operator can retry them (after a fix) or drop them."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import asyncpg
import orjson

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


@dataclass(frozen=True)
class ParkedRecord:
    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    headers: Sequence[tuple[str, bytes | None]]
    reason: str


def headers_json(headers: Sequence[tuple[str, bytes | None]]) -> str:
    """Headers as JSON, each value hex-encoded: a header that is not UTF-8 survives as is."""
    return orjson.dumps([[k, v.hex() if v is not None else None] for k, v in headers]).decode()


def headers_from_json(raw: Any) -> list[tuple[str, bytes | None]]:
    items = orjson.loads(raw) if isinstance(raw, str | bytes) else raw
    return [(k, bytes.fromhex(v) if v is not None else None) for k, v in items]


async def park(conn: asyncpg.Connection, records: Sequence[ParkedRecord]) -> None:
    if not records:
        return
    await conn.execute(
        PARK,
        [r.topic for r in records],
        [r.partition for r in records],
        [r.offset for r in records],
        [r.key for r in records],
        [r.value for r in records],
        [headers_json(r.headers) for r in records],
        [r.reason for r in records],
    )


async def due_retries(conn: asyncpg.Connection, limit: int) -> list[asyncpg.Record]:
    """Records an operator asked to retry, locked for this transaction."""
    return list(await conn.fetch(DUE_RETRIES, limit))


async def resolve(conn: asyncpg.Connection, parked_id: int) -> None:
    await conn.execute("DELETE FROM parked_records WHERE id = $1", parked_id)


async def still_parked(conn: asyncpg.Connection, parked_id: int, reason: str) -> None:
    await conn.execute(
        "UPDATE parked_records SET retry_requested_at = NULL, attempts = attempts + 1, "
        "reason = $2 WHERE id = $1",
        parked_id,
        reason,
    )
