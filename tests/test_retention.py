"""Retention jobs keep what is proof or state and purge the rest; the scheduler lease makes
N replicas run each round once."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import pytest
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from consent.adapters.db import make_engine, make_sessionmaker
from consent.service import scheduler
from consent.service.retention import purge_idempotency, purge_receipts
from consent.settings import Settings
from consent_common.db import plain_url
from propagator.db import SERVER_SETTINGS
from propagator.retention import purge_deliveries, purge_inbox
from tests.conftest import eventually

NOW = datetime.now(UTC)
OLD = NOW - timedelta(days=60)  # past every default retention


@pytest.fixture
async def sessions(settings: Settings) -> AsyncIterator[async_sessionmaker[AsyncSession]]:
    engine = make_engine(settings.database_url or "", pool_size=2)
    yield make_sessionmaker(engine)
    await engine.dispose()


@pytest.fixture
async def pool(settings: Settings) -> AsyncIterator[asyncpg.Pool]:
    """The propagator's own pool: its retention jobs are its own (issue 16)."""
    made = await asyncpg.create_pool(
        plain_url(settings.database_url or ""),
        min_size=1,
        max_size=2,
        server_settings=SERVER_SETTINGS,
    )
    assert made is not None
    yield made
    await made.close()


async def delivery(
    db: asyncpg.Connection,
    name: str,
    subject: str,
    sequence: int,
    status: str,
    *,
    at: datetime = OLD,
    event_type: str = "consent.changed",
    replay: bool = False,
) -> None:
    await db.execute(
        """INSERT INTO deliveries (id, event_id, event_type, subject_id, sequence, processor,
               status, attempts, max_attempts, payload, occurred_at, next_attempt_at,
               created_at, updated_at, replay)
           VALUES ($1, $2, $3, $4, $5, 'email', $6, 1, 8, '{}', $7, $7, $7, $7, $8)""",
        uuid.uuid4(), name, event_type, subject, sequence, status, at, replay,
    )  # fmt: skip


async def receipt(db: asyncpg.Connection, subject: str, event_id: str, sequence: int) -> None:
    await db.execute(
        "INSERT INTO processor_receipts VALUES ('email', $1, $2, $3, $4)",
        subject, sequence, event_id, OLD,
    )  # fmt: skip


async def test_finished_deliveries_are_purged_but_proof_and_state_stay(
    pool: asyncpg.Pool, db: asyncpg.Connection
) -> None:
    await delivery(db, "a", "s1", 1, "delivered")  # superseded by later ones: purged
    await delivery(db, "b", "s1", 2, "delivered")  # the processor's last acknowledgement
    await receipt(db, "s1", "b", 2)
    await delivery(db, "c", "s1", 3, "superseded")  # purged
    await delivery(db, "e", "s1", 4, "delivered", event_type="subject.erasure_requested")
    await delivery(db, "f", "s2", 1, "dead")  # work for an operator
    await delivery(db, "g", "s2", 2, "pending")  # work
    await delivery(db, "h", "s3", 1, "delivered", at=NOW)  # recent
    await delivery(db, "h0", "s3", 0, "delivered", at=NOW)  # recent, though superseded
    await delivery(db, "i", "s4", 2, "delivered")  # the newest live (non-replay) delivery
    await delivery(db, "j", "s4", 2, "delivered", at=OLD + timedelta(hours=1), replay=True)
    await receipt(db, "s4", "j", 2)

    assert await purge_deliveries(pool, NOW) == 2
    left = {r["event_id"] for r in await db.fetch("SELECT event_id FROM deliveries")}
    assert left == {"b", "e", "f", "g", "h", "h0", "i", "j"}
    assert await purge_deliveries(pool, NOW) == 0


async def test_the_receipts_read_model_keeps_proof_and_state_and_purges_the_rest(
    sessions: Any, db: asyncpg.Connection
) -> None:
    """The consent service's copy of the receipts follows the propagator's rule."""

    async def row(event_id: str, subject: str, seq: int, status: str, **kw: Any) -> None:
        at = kw.get("at", OLD)
        await db.execute(
            """INSERT INTO propagation_receipts (delivery_id, event_id, event_type, subject_id,
                   sequence, processor, status, attempts, created_at, updated_at)
               VALUES ($1, $2, $3, $4, $5, 'email', $6, 1, $7, $7)""",
            uuid.uuid4(), event_id, kw.get("event_type", "consent.changed"), subject, seq,
            status, at,
        )  # fmt: skip

    await row("a", "s1", 1, "delivered")  # older than a newer one: purged
    await row("b", "s1", 2, "delivered")  # what the processor last acknowledged
    await db.execute(
        "INSERT INTO processor_acks (processor, subject_id, last_delivered_sequence, "
        "last_event_id) VALUES ('email', 's1', 2, 'b')"
    )
    await row("c", "s1", 3, "superseded")  # purged
    await row("e", "s1", 4, "delivered", event_type="subject.erasure_requested")  # a receipt
    await row("f", "s2", 1, "dead")  # work for an operator
    await row("g", "s2", 2, "pending")
    await row("h0", "s3", 0, "delivered", at=NOW)  # recent
    await row("h", "s3", 1, "delivered", at=NOW)
    await row("i", "s4", 1, "delivered")  # the newest for its subject: /propagation shows it

    assert await purge_receipts(sessions, NOW) == 2
    left = {r[0] for r in await db.fetch("SELECT event_id FROM propagation_receipts")}
    assert left == {"b", "e", "f", "g", "h0", "h", "i"}
    assert await purge_receipts(sessions, NOW) == 0
    assert "receipts_retention" in scheduler.JOBS


async def test_idempotency_responses_and_inbox_entries_expire(
    sessions: Any, pool: asyncpg.Pool, db: asyncpg.Connection
) -> None:
    for key, at in (("old", NOW - timedelta(hours=25)), ("new", NOW - timedelta(hours=23))):
        await db.execute(
            """INSERT INTO idempotency_keys (principal, key, request_hash, status_code, body,
                   headers, created_at) VALUES ('p', $1, 'h', 200, '', $2, $3)""",
            key, json.dumps({}), at,
        )  # fmt: skip
    for event_id, at in (("old", NOW - timedelta(days=15)), ("new", NOW - timedelta(days=13))):
        await db.execute("INSERT INTO propagator_inbox VALUES ($1, 't', 0, 1, $2)", event_id, at)
    assert await purge_idempotency(sessions, NOW) == 1
    assert await purge_inbox(pool, NOW) == 1
    assert await db.fetchval("SELECT array_agg(key) FROM idempotency_keys") == ["new"]
    assert await db.fetchval("SELECT array_agg(event_id) FROM propagator_inbox") == ["new"]


async def test_one_replica_at_a_time_runs_the_scheduled_jobs(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    ran: list[int] = []

    async def probe(sessions: Any, now: datetime) -> int:
        ran.append(id(sessions))
        return 0

    monkeypatch.setattr(scheduler, "JOBS", {"probe": probe})
    engines = [make_engine(settings.database_url or "", pool_size=2) for _ in range(3)]
    replicas = [make_sessionmaker(e) for e in engines]
    stops = [asyncio.Event() for _ in replicas]
    tasks = [
        asyncio.create_task(scheduler.run_scheduler(s, 0.05, stop))
        for s, stop in zip(replicas, stops, strict=True)
    ]
    try:
        await eventually(lambda: len(ran) >= 10)
        leader = ran[-1]
        assert set(ran) == {leader}, "only the lease holder runs rounds"
        index = [id(s) for s in replicas].index(leader)
        stops[index].set()  # the leader stops: another replica takes over
        await tasks[index]
        ran.clear()
        await eventually(lambda: len(ran) >= 10)
        assert leader not in ran and len(set(ran)) == 1
    finally:
        for stop in stops:
            stop.set()
        await asyncio.gather(*tasks)
        for e in engines:
            await e.dispose()


async def test_one_replica_at_a_time_runs_a_retention_round(
    pool: asyncpg.Pool, db: asyncpg.Connection, settings: Settings
) -> None:
    """While a round runs (its lock held), another replica's round is skipped; once it ends,
    the next round runs. The lock outlives the batches' own transactions."""
    from propagator.repositories.retention import LOCK, UNLOCK
    from propagator.retention import retention_round

    other = await asyncpg.connect(plain_url(settings.database_url or ""))
    try:
        assert await other.fetchval(LOCK)  # a replica's round in progress
        assert await retention_round(settings, pool, NOW) is None
        await other.fetchval(UNLOCK)
        assert await retention_round(settings, pool, NOW) is not None
        # and a finished round left the lock free for the next replica
        assert await other.fetchval(LOCK)
        await other.fetchval(UNLOCK)
    finally:
        await other.close()
