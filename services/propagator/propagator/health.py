"""Processor health, shared by every replica (``processor_health``): how long a processor has
failed without one success, and whether it is disabled.

A processor that keeps failing for ``disable_after_s`` (default five days, as webhook
gateways do) is disabled: the workers stop sending to it (no probes either), the intake
keeps queueing its deliveries, nothing is dropped, ``consent_processor_disabled`` raises an
alert. Only an operator enables it again (``consentctl processors enable``,
``POST /v1/processors/{name}/enable`` on the propagator's API); enabling redrives what died
of an exhausted retry budget, and the pending deliveries go out in order.

How this combines with the automatic redrive (``worker.py``): while a processor is enabled,
a recovery probe now and then finds out when it answers again and then redrives what it
missed, with no operator. Disabling ends that: a disabled processor is never probed, since
someone decided (or the time limit decided) that it is gone until told otherwise."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import asyncpg

from propagator.store import audit

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
LIST = """
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
REDRIVE_EXHAUSTED = """
UPDATE deliveries SET status = 'pending', attempts = 0, next_attempt_at = now(),
       lease_until = NULL, updated_at = now()
WHERE processor = $1 AND status = 'dead' AND last_error LIKE 'gave up after%'
RETURNING id
"""


async def note(
    conn: asyncpg.Connection,
    processor: str,
    *,
    succeeded: bool,
    failed: bool,
    error: str | None,
    disable_after_s: float,
) -> bool:
    """Record a batch's outcome; True when this call disabled the processor (audited)."""
    just_disabled = await conn.fetchval(
        NOTE, processor, succeeded, failed, (error or "")[:200] or None, disable_after_s
    )
    if just_disabled:
        await audit(
            conn,
            "propagator",
            "processor.disabled",
            {"processor": processor},
            {"disable_after_s": disable_after_s},
            reference=processor,
        )
        return True
    return False


async def is_disabled(conn: asyncpg.Connection, processor: str) -> bool:
    return bool(await conn.fetchval(IS_DISABLED, processor))


async def states(conn: asyncpg.Connection) -> list[dict[str, Any]]:
    return [dict(r) for r in await conn.fetch(LIST)]


async def enable(conn: asyncpg.Connection, processor: str, actor: str) -> int | None:
    """Enable a disabled processor and redrive what died of exhausted retries while it was
    failing; None when it was not disabled. Audited; the workers are woken on commit."""
    if await conn.fetchval(ENABLE, processor) is None:
        return None
    redriven = len(await conn.fetch(REDRIVE_EXHAUSTED, processor))
    await audit(
        conn,
        actor,
        "processor.enabled",
        {"processor": processor},
        {"redriven": redriven},
        reference=processor,
    )
    await conn.execute("SELECT pg_notify('deliveries', '')")
    return redriven


def describe(row: dict[str, Any], now: datetime) -> dict[str, Any]:
    """A state row as the API shows it (times as RFC 3339)."""

    def at(v: datetime | None) -> str | None:
        return v.isoformat() if v else None

    failing = row["failing_since"]
    return {
        "processor": row["processor"],
        "disabled": row["disabled_at"] is not None,
        "disabled_at": at(row["disabled_at"]),
        "disabled_reason": row["disabled_reason"],
        "failing_since": at(failing),
        "failing_for_s": round((now - failing).total_seconds(), 1) if failing else 0.0,
        "last_success_at": at(row["last_success_at"]),
        "last_failure_at": at(row["last_failure_at"]),
        "last_error": row["last_error"],
    }
