"""Leases for periodic work: a PostgreSQL advisory lock held on a connection of its own.

With N API replicas, only the holder runs the scheduled jobs, so each round's work is done
once. The lock lives as long as the holder's session: a replica that stops or loses its
connection releases it, and another takes it at its next round (TCP keepalives bound how
long a vanished holder's session lingers, adapters/db.py)."""

from __future__ import annotations

import asyncio
import contextlib

import asyncpg
import structlog

from consent_common.db import connect_durable, plain_url

log = structlog.get_logger()
SCHEDULER_LEASE_KEY = 0x636F6E73656E7401  # "consent" + 1; the relay's lock is "consent"


class AdvisoryLease:
    def __init__(self, database_url: str, key: int, name: str) -> None:
        self.url, self.key, self.name = plain_url(database_url), key, name
        self._conn: asyncpg.Connection | None = None

    async def held(self) -> bool:
        """Whether this process holds the lease now (taking it if it is free)."""
        if self._conn is not None:
            try:
                await asyncio.wait_for(self._conn.fetchval("SELECT 1"), 5)
                return True
            except Exception:  # the session, and the lock with it, is gone
                log.warning("lease_lost", lease=self.name)
                await self.release()
        try:
            conn = await asyncio.wait_for(
                connect_durable(self.url, f"consent-lease:{self.name}"), 5
            )
        except Exception:
            return False
        try:
            if await asyncio.wait_for(
                conn.fetchval("SELECT pg_try_advisory_lock($1)", self.key), 5
            ):
                self._conn = conn
                log.info("lease_taken", lease=self.name)
                return True
        except Exception:
            pass
        with contextlib.suppress(Exception):
            await asyncio.wait_for(conn.close(), 2)
        return False

    async def release(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(conn.close(), 2)
