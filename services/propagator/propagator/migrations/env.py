"""Alembic environment of the propagator: its own schema and its own version table
(``propagator.alembic_version``), independent of the consent service's migrations."""

from __future__ import annotations

import asyncio

from alembic import context
from sqlalchemy import text
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import create_async_engine

SCHEMA = "propagator"


def _run(connection: Connection) -> None:
    # one migrator at a time (two jobs started together), and the schema that holds the
    # version table must exist before Alembic looks for it
    connection.execute(text("SELECT pg_advisory_xact_lock(hashtext('propagator-migrate'))"))
    connection.execute(text(f"CREATE SCHEMA IF NOT EXISTS {SCHEMA}"))
    context.configure(connection=connection, target_metadata=None, version_table_schema=SCHEMA)
    with context.begin_transaction():
        context.run_migrations()


async def _main() -> None:
    url = context.config.get_main_option("sqlalchemy.url")
    assert url
    engine = create_async_engine(url)
    async with engine.connect() as conn:
        await conn.run_sync(_run)
        await conn.commit()
    await engine.dispose()


if context.is_offline_mode():
    context.configure(
        url=context.config.get_main_option("sqlalchemy.url"),
        literal_binds=True,
        version_table_schema=SCHEMA,
    )
    with context.begin_transaction():
        context.run_migrations()
else:
    asyncio.run(_main())
