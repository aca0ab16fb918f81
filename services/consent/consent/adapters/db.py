"""The consent service's engine, sessions, the raw-driver escape hatch for hot statements,
and migrations. Who commits is service/unit_of_work.py's ``unit_of_work``."""

from __future__ import annotations

import asyncio
from pathlib import Path

import asyncpg
import orjson
from alembic.config import Config
from sqlalchemy import text
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)

from consent_common.db import plain_url, sqlalchemy_url

MIGRATIONS = Path(__file__).resolve().parent.parent / "migrations"


def make_engine(url: str, pool_size: int = 10, pool_timeout_s: float = 30.0) -> AsyncEngine:
    return create_async_engine(
        sqlalchemy_url(url),
        pool_size=pool_size,
        # no overflow: under sustained load SQLAlchemy closes overflow connections as they
        # come back and opens new ones, each a new backend plus asyncpg's type introspection
        # (measured: 145 new connections per 5,000 decisions at 32 in flight, -25% rate)
        max_overflow=0,
        pool_timeout=pool_timeout_s,  # the API: 5 s, then 429 (api/problems.py)
        pool_pre_ping=False,
        hide_parameters=True,  # bound values (a birth date) never reach an error or a log
        json_serializer=_json_text,
        json_deserializer=orjson.loads,  # a snapshot's states arrive as JSON: 5x json.loads
    )


def _json_text(value: object) -> str:
    return orjson.dumps(value).decode()


_BEGIN = text("SELECT 1")


async def driver(session: AsyncSession) -> asyncpg.Connection:
    """The asyncpg connection under ``session``, inside its transaction, for the hot-path
    statements: they skip SQLAlchemy's per-statement machinery (compile cache, execution
    context, result rows), about 0.1 ms of CPU each. SQLAlchemy begins a transaction only
    when it runs a statement itself, and only commits one it began: if none is open yet
    (and the session is not in autocommit), one is begun here through the session."""
    conn = await session.connection()
    raw: asyncpg.Connection = (await conn.get_raw_connection()).driver_connection
    autocommit = conn.sync_connection is not None and (
        conn.sync_connection.get_execution_options().get("isolation_level") == "AUTOCOMMIT"
    )
    if not autocommit and not raw.is_in_transaction():
        await conn.execute(_BEGIN)
        if not raw.is_in_transaction():  # never let a write commit on its own
            raise RuntimeError("the session did not begin a transaction")
    return raw


async def ping(engine: AsyncEngine, timeout_s: float = 2.0) -> bool:
    """Whether the database answers within ``timeout_s`` (readiness; never raises)."""
    try:
        async with engine.connect() as conn:
            await asyncio.wait_for(conn.execute(_BEGIN), timeout_s)
        return True
    except Exception:  # readiness reports failure, it never raises
        return False


async def reachable(database_url: str, timeout_s: float = 2.0) -> bool:
    """``ping`` for a process without an engine (a worker's /readyz): a connection of its
    own, opened and closed."""
    try:
        conn = await asyncio.wait_for(asyncpg.connect(plain_url(database_url)), timeout_s)
        try:
            return bool(await asyncio.wait_for(conn.fetchval("SELECT 1"), timeout_s) == 1)
        finally:
            await conn.close()
    except Exception:  # readiness reports failure, it never raises
        return False


def make_sessionmaker(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    return async_sessionmaker(engine, class_=AsyncSession, expire_on_commit=False)


def _alembic_config(url: str) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.set_main_option("sqlalchemy.url", sqlalchemy_url(url).replace("%", "%%"))
    return cfg


def migrate_sync(url: str, revision: str = "head") -> None:
    from alembic import command

    command.upgrade(_alembic_config(url), revision)


async def migrate(url: str, revision: str = "head") -> None:
    await asyncio.to_thread(migrate_sync, url, revision)
