"""Two services that own their data (issue 16): each table has one owner, in its own schema,
with its own migrations."""

from __future__ import annotations

import uuid

import asyncpg

from consent.adapters.db import migrate
from consent_common.db import plain_url, with_database
from propagator.db import migrate as migrate_propagator

PROPAGATOR_TABLES = {"deliveries", "processor_receipts", "propagator_inbox", "parked_records"}


async def _tables(conn: asyncpg.Connection, schema: str) -> set[str]:
    rows = await conn.fetch(
        "SELECT table_name FROM information_schema.tables WHERE table_schema = $1", schema
    )
    return {r[0] for r in rows}


async def test_each_service_migrates_its_own_schema_alone(pg_url: str) -> None:
    name = f"consent_own_{uuid.uuid4().hex[:8]}"
    admin = await asyncpg.connect(pg_url)
    await admin.execute(f'CREATE DATABASE "{name}"')
    url = with_database(pg_url, name)
    try:
        await migrate_propagator(url)  # the propagator first, without the consent service
        conn = await asyncpg.connect(plain_url(url))
        try:
            assert await _tables(conn, "propagator") == PROPAGATOR_TABLES | {"alembic_version"}
            assert not await _tables(conn, "public")
            await migrate(url)
            public = await _tables(conn, "public")
            assert "consent_ledger" in public and "outbox" in public
            assert not public & PROPAGATOR_TABLES
            await migrate_propagator(url)  # idempotent
        finally:
            await conn.close()
    finally:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()


async def test_an_existing_install_keeps_its_deliveries(pg_url: str) -> None:
    """Before issue 16 the propagator's tables lived in ``public`` (created by the consent
    service's migrations); its first own migration moves them, rows and all."""
    name = f"consent_old_{uuid.uuid4().hex[:8]}"
    admin = await asyncpg.connect(pg_url)
    await admin.execute(f'CREATE DATABASE "{name}"')
    url = with_database(pg_url, name)
    try:
        await migrate(url)
        await migrate_propagator(url)
        conn = await asyncpg.connect(plain_url(url))
        try:
            # what an install from before issue 16 looks like
            for table in PROPAGATOR_TABLES:
                await conn.execute(f"ALTER TABLE propagator.{table} SET SCHEMA public")
            await conn.execute("DROP SCHEMA propagator CASCADE")
            await conn.execute(
                "INSERT INTO public.processor_receipts VALUES ('email', 'old', 7, 'e-7', now())"
            )
            await migrate_propagator(url)
            assert not await _tables(conn, "public") & PROPAGATOR_TABLES
            row = await conn.fetchrow("SELECT * FROM propagator.processor_receipts")
            assert (row["subject_id"], row["last_delivered_sequence"]) == ("old", 7)
        finally:
            await conn.close()
    finally:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()
