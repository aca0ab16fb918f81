"""Processor health (``processor_health``), shared by every replica: the failing streak of
each processor and whether it is disabled. The rules that use it are in ``health.py``."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import asyncpg

from propagator.repositories.rows import build

# One statement per recorded batch: a success clears the failing streak; a failure starts
# one (or extends it) and disables the processor once the streak is older than the limit.
NOTE = """
INSERT INTO processor_health AS h (processor, failing_since, last_success_at, last_failure_at,
                                   last_error, updated_at)
VALUES ($1, CASE WHEN $2 THEN NULL ELSE now() END, CASE WHEN $2 THEN now() END,
        CASE WHEN $3 THEN now() END, $4, now())
ON CONFLICT (processor) DO UPDATE SET
    failing_since = CASE WHEN $2 THEN NULL ELSE coalesce(h.failing_since, now()) END,
    last_success_at = CASE WHEN $2 THEN now() ELSE h.last_success_at END,
    last_failure_at = CASE WHEN $3 THEN now() ELSE h.last_failure_at END,
    last_error = CASE WHEN $3 THEN $4 ELSE h.last_error END,
    disabled_at = CASE
        WHEN h.disabled_at IS NOT NULL THEN h.disabled_at
        WHEN NOT $2 AND h.failing_since < now() - make_interval(secs => $5) THEN now()
    END,
    disabled_reason = CASE
        WHEN h.disabled_at IS NOT NULL THEN h.disabled_reason
        WHEN NOT $2 AND h.failing_since < now() - make_interval(secs => $5)
            THEN 'failing without a success since ' || h.failing_since::text
    END,
    updated_at = now()
RETURNING disabled_at = now() AS just_disabled  -- set by this statement, not before
"""
IS_DISABLED = "SELECT disabled_at IS NOT NULL FROM processor_health WHERE processor = $1"
STATES = """
SELECT processor, failing_since, last_success_at, last_failure_at, last_error, disabled_at,
       disabled_reason
FROM processor_health ORDER BY processor
"""
ENABLE = """
UPDATE processor_health SET disabled_at = NULL, disabled_reason = NULL, failing_since = NULL,
       updated_at = now()
WHERE processor = $1 AND disabled_at IS NOT NULL
RETURNING processor
"""
DISABLED = "SELECT processor FROM processor_health WHERE disabled_at IS NOT NULL"


@dataclass(frozen=True, slots=True)
class ProcessorState:
    processor: str
    failing_since: datetime | None
    last_success_at: datetime | None
    last_failure_at: datetime | None
    last_error: str | None
    disabled_at: datetime | None
    disabled_reason: str | None


class ProcessorHealthRepository:
    def __init__(self, conn: asyncpg.Connection) -> None:
        self.conn = conn

    async def note(
        self,
        processor: str,
        *,
        succeeded: bool,
        failed: bool,
        error: str | None,
        disable_after_s: float,
    ) -> bool:
        """Record a batch's outcome; True when this statement disabled the processor."""
        return bool(
            await self.conn.fetchval(NOTE, processor, succeeded, failed, error, disable_after_s)
        )

    async def is_disabled(self, processor: str) -> bool:
        return bool(await self.conn.fetchval(IS_DISABLED, processor))

    async def states(self) -> list[ProcessorState]:
        """Every processor that has had an outcome, by name."""
        return [build(ProcessorState, r) for r in await self.conn.fetch(STATES)]

    async def disabled(self) -> set[str]:
        return {r["processor"] for r in await self.conn.fetch(DISABLED)}

    async def enable(self, processor: str) -> bool:
        """Clear a disabled processor's state; False when it was not disabled."""
        return await self.conn.fetchval(ENABLE, processor) is not None
