"""The operator audit log's one writer: who did what, when, to what scope, with what counts.
Requests and commands write through ``OperationsRepository.audit``, the receipts projector
and ``consentctl`` through ``write_audit``; all three run ``INSERT_AUDIT``. Append-only (a
trigger refuses updates and deletes)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import asyncpg
import orjson

INSERT_AUDIT = """
INSERT INTO audit_log (at, actor, action, scope, counts, reference, source_id)
VALUES (coalesce($1, now()), $2, $3, $4::jsonb, $5::jsonb, $6, $7)
ON CONFLICT (source_id) DO NOTHING
RETURNING id
"""


@dataclass(frozen=True)
class AuditRecord:
    actor: str
    action: str
    scope: dict[str, Any] = field(default_factory=dict)
    counts: dict[str, Any] = field(default_factory=dict)
    reference: str | None = None
    at: datetime | None = None  # now, unless the action happened elsewhere earlier
    source_id: str | None = None  # set when copied from another service: written once

    def row(self) -> tuple[Any, ...]:
        return (
            self.at,
            self.actor,
            self.action,
            orjson.dumps(self.scope).decode(),
            orjson.dumps(self.counts).decode(),
            self.reference,
            self.source_id,
        )


async def write_audit(conn: asyncpg.Connection, records: Sequence[AuditRecord]) -> None:
    if records:
        await conn.executemany(INSERT_AUDIT, [r.row() for r in records])


async def write_one(conn: asyncpg.Connection, record: AuditRecord) -> int:
    """The new entry's id."""
    return int(await conn.fetchval(INSERT_AUDIT, *record.row()))
