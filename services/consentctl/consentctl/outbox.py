"""``consentctl outbox status``: backlog, age, publish rate and the active relay."""

from __future__ import annotations

import asyncio
from typing import Any

import asyncpg
from rich.console import Console
from rich.table import Table

from consent_common.db import plain_url

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


async def status(database_url: str) -> dict[str, Any]:
    conn = await asyncpg.connect(plain_url(database_url))
    try:
        row = await conn.fetchrow(STATUS_SQL)
        leader = await conn.fetchval(LEADER_SQL)
    finally:
        await conn.close()
    assert row is not None
    return {**dict(row), "leader": leader}


def print_status(database_url: str) -> dict[str, Any]:
    s = asyncio.run(status(database_url))
    table = Table("metric", "value", title="outbox")
    table.add_row("unpublished rows (backlog)", str(s["backlog"]))
    table.add_row("oldest unpublished (s)", f"{float(s['oldest_s']):.1f}")
    table.add_row(
        "published, last minute", f"{s['last_minute']} ({int(s['last_minute']) / 60:.1f}/s)"
    )
    table.add_row("published, last hour", str(s["last_hour"]))
    table.add_row("last published at", str(s["last_published"] or "-"))
    table.add_row("active relay", str(s["leader"] or "none (no relay holds the lock)"))
    Console().print(table)
    return s
