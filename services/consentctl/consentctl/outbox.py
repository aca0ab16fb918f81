"""``consentctl outbox status``: backlog, age, publish rate and the active relay."""

from __future__ import annotations

import asyncio
from typing import Any

import asyncpg
from rich.console import Console
from rich.table import Table

from consent.adapters.outbox_relay import outbox_status
from consent_common.db import plain_url


async def status(database_url: str) -> dict[str, Any]:
    conn = await asyncpg.connect(plain_url(database_url))
    try:
        return await outbox_status(conn)
    finally:
        await conn.close()


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
