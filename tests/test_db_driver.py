"""The hot path sends statements straight to asyncpg (``adapters.db.driver``): they must
belong to the session's transaction, committed or rolled back with it, never on their own."""

from __future__ import annotations

import asyncpg
from sqlalchemy import text

from consent.adapters.db import driver, make_engine, make_sessionmaker

INSERT = "INSERT INTO subjects (subject_id, sequence) VALUES ($1, 0)"


async def _count(db: asyncpg.Connection, subject_id: str) -> int:
    return int(await db.fetchval("SELECT count(*) FROM subjects WHERE subject_id = $1", subject_id))


async def test_a_raw_statement_first_in_a_session_still_runs_in_its_transaction(
    db_url: str, db: asyncpg.Connection
) -> None:
    engine = make_engine(db_url, 2)
    sessions = make_sessionmaker(engine)
    try:
        async with sessions() as session:
            conn = await driver(session)  # nothing ran through the session before
            assert conn.is_in_transaction()
            await conn.execute(INSERT, "drv-rolled-back")
            assert await _count(db, "drv-rolled-back") == 0  # not visible outside yet
            await session.rollback()
        assert await _count(db, "drv-rolled-back") == 0

        async with sessions() as session:
            await session.execute(text("SELECT 1"))
            conn = await driver(session)
            await conn.execute(INSERT, "drv-committed")
            await session.commit()
        assert await _count(db, "drv-committed") == 1

        async with sessions() as session:  # closed without commit: rolled back
            await (await driver(session)).execute(INSERT, "drv-abandoned")
        assert await _count(db, "drv-abandoned") == 0
    finally:
        await engine.dispose()


async def test_autocommit_sessions_get_no_transaction(db_url: str) -> None:
    engine = make_engine(db_url, 2)
    reads = make_sessionmaker(engine.execution_options(isolation_level="AUTOCOMMIT"))
    try:
        async with reads() as session:
            conn = await driver(session)
            assert not conn.is_in_transaction()
            assert await conn.fetchval("SELECT 1") == 1
    finally:
        await engine.dispose()
