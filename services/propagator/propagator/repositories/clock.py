"""The database's clock: the one every stored time was written with, so ages computed
against it (failing for, oldest open) do not depend on this host's clock."""

from __future__ import annotations

from datetime import datetime

import asyncpg


class DatabaseClock:
    def __init__(self, conn: asyncpg.Connection) -> None:
        self.conn = conn

    async def now(self) -> datetime:
        now: datetime = await self.conn.fetchval("SELECT now()")
        return now
