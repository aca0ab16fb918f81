"""The outbox relay under crashes, broker outages, competition and volume."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys

import asyncpg
import pytest

from consent.adapters.kafka import ensure_topics
from consent.settings import Settings
from consentctl.embedded import TansuBroker
from tests.conftest import eventually
from tests.support import dedupe_in_order, read_topic, running_stack, write_changes

ARGS = {"consentctl.main": ["serve", "relay"]}  # tests.relay_crash serves the relay itself


def relay_process(
    settings: Settings, module: str = "consentctl.main", **env: str
) -> subprocess.Popen[bytes]:
    full = {
        **os.environ,
        "CONSENT_DATABASE_URL": settings.database_url or "",
        "CONSENT_KAFKA_BOOTSTRAP": settings.kafka_bootstrap or "",
        "CONSENT_TOPIC_PREFIX": settings.topic_prefix,
        "CONSENT_RELAY_POLL_INTERVAL_S": "0.2",
        **env,
    }
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            module,
            *(["serve", "relay"] if module == "consentctl.main" else []),
        ],
        env=full,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )


async def unpublished(db: asyncpg.Connection) -> int:
    return int(await db.fetchval("SELECT count(*) FROM outbox WHERE published_at IS NULL"))


def assert_complete_and_ordered(by_subject: dict[str, list[int]], expected: dict[str, int]):
    for subject, n in expected.items():
        assert by_subject.get(subject) == list(range(1, n + 1)), subject


@pytest.mark.timeout(120)
async def test_crash_between_publish_and_mark_loses_nothing(topics: Settings, db):
    subjects = [f"c{i}" for i in range(4)]
    n = await write_changes(topics, subjects, 5)
    crashing = relay_process(topics, module="tests.relay_crash")
    assert await asyncio.to_thread(crashing.wait, 60) == 86  # died after publishing
    assert await unpublished(db) == n  # ... before marking anything

    async with running_stack(topics):
        await eventually(lambda: _zero(db), timeout=30)
    records = await read_topic(topics, topics.events_topic, min_count=2 * n)
    assert len(records) == 2 * n  # every event twice: at least once, none missing
    assert_complete_and_ordered(dedupe_in_order(records), {s: 5 for s in subjects})


async def _zero(db: asyncpg.Connection) -> bool:
    return await unpublished(db) == 0


@pytest.mark.timeout(180)
async def test_broker_outage_backlog_grows_then_drains_in_order(settings: Settings, db, tmp_path):
    broker = TansuBroker(log_path=tmp_path / "tansu.log").start()
    cfg = settings.model_copy(update={"kafka_bootstrap": broker.bootstrap})
    try:
        await ensure_topics(cfg, partitions=3)
        subjects = [f"b{i}" for i in range(5)]
        async with running_stack(cfg):
            await write_changes(cfg, subjects, 2)
            await eventually(lambda: _zero(db), timeout=30)
            broker.stop()
            written = await write_changes(cfg, subjects, 6)  # writes never need the broker
            assert written == 30
            await asyncio.sleep(1.0)
            assert await unpublished(db) == 30  # the backlog grows while the broker is away
            broker = TansuBroker(port=broker.port, log_path=tmp_path / "tansu2.log").start()
            await ensure_topics(cfg, partitions=3)  # Tansu keeps topics in memory only
            await eventually(lambda: _zero(db), timeout=90)
        records = await read_topic(cfg, cfg.events_topic, min_count=30)
        by_subject = dedupe_in_order(records)
        for s in subjects:  # the restarted broker holds what was published after it came back
            assert by_subject[s] == list(range(3, 9)), s
    finally:
        broker.stop()


async def _leader_pid(db: asyncpg.Connection) -> int | None:
    name = await db.fetchval(
        "SELECT a.application_name FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid "
        "WHERE l.locktype = 'advisory' AND l.granted AND a.application_name LIKE 'consent-relay:%'"
    )
    return int(name.rsplit("-", 1)[1]) if name else None


@pytest.mark.timeout(180)
async def test_two_relays_one_publishes_and_the_standby_takes_over(topics: Settings, db):
    first, second = relay_process(topics), relay_process(topics)
    try:
        leader = await eventually(lambda: _leader_pid(db), timeout=30)
        assert leader in (first.pid, second.pid)
        holders = await db.fetchval(
            "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND granted"
        )
        assert holders == 1
        subjects = [f"r{i}" for i in range(6)]
        await write_changes(topics, subjects, 4)
        await eventually(lambda: _zero(db), timeout=30)

        os.kill(leader, signal.SIGKILL)
        survivor = second if leader == first.pid else first
        new_leader = await eventually(lambda: _leader_is(db, survivor.pid), timeout=30)
        assert new_leader
        await write_changes(topics, subjects, 4)
        await eventually(lambda: _zero(db), timeout=30)
    finally:
        for p in (first, second):
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
                await asyncio.to_thread(p.wait, 15)
    records = await read_topic(topics, topics.events_topic, min_count=48)
    assert_complete_and_ordered(dedupe_in_order(records), {s: 8 for s in subjects})


async def _leader_is(db: asyncpg.Connection, pid: int) -> bool:
    return await _leader_pid(db) == pid


@pytest.mark.timeout(300)
async def test_ten_thousand_changes_across_500_subjects(topics: Settings, db):
    subjects = [f"v{i:03d}" for i in range(500)]
    async with running_stack(topics):
        n = await write_changes(topics, subjects, 20, concurrency=16)
        assert n == 10_000
        await eventually(lambda: _zero(db), timeout=120)
    records = await read_topic(topics, topics.events_topic, min_count=n, timeout=60)
    assert_complete_and_ordered(dedupe_in_order(records), {s: 20 for s in subjects})


@pytest.mark.timeout(120)
async def test_a_row_the_broker_refuses_holds_back_only_its_own_subject(topics: Settings, db):
    """A payload over the producer's request size is parked with its error; that subject's
    later rows wait behind it (order), everyone else's are published; skipping it lets its
    subject go on."""
    await write_changes(topics, ["big"], 1)
    huge = '{"subject_id": "big", "blob": "' + "x" * 2_000_000 + '"}'
    await db.execute(  # a row no broker takes (over the producer's 1 MB request size)
        "INSERT INTO outbox (id, aggregatetype, aggregateid, type, payload, sequence, occurred_at)"
        " VALUES (gen_random_uuid(), 'subject', 'big', 'consent.changed', $1::jsonb, NULL, now())",
        huge,
    )
    await write_changes(topics, ["big"], 2)  # its next change (denied), queued behind it
    await write_changes(topics, ["other-1", "other-2"], 3)
    async with running_stack(topics):
        await eventually(lambda: _others_published(db), timeout=30)
        await eventually(
            lambda: db.fetchval("SELECT count(*) FROM outbox WHERE parked_at IS NOT NULL"),
            timeout=30,
        )
        parked = await db.fetch(
            "SELECT aggregateid, last_error FROM outbox WHERE parked_at IS NOT NULL"
        )
        assert [(r["aggregateid"], r["last_error"]) for r in parked] == [
            ("big", "MessageSizeTooLargeError")
        ]
        waiting = await db.fetchval(
            "SELECT count(*) FROM outbox WHERE aggregateid = 'big' AND published_at IS NULL"
        )
        assert waiting == 2  # the parked row and the one behind it
        row_id = await db.fetchval("SELECT id FROM outbox WHERE parked_at IS NOT NULL")
        await db.execute(
            "UPDATE outbox SET published_at = now() WHERE id = $1", row_id
        )  # what `consentctl outbox skip` does
        await db.execute("NOTIFY outbox")
        await eventually(lambda: _zero(db), timeout=30)
    records = await read_topic(topics, topics.events_topic, min_count=8)
    by_subject = dedupe_in_order(records)
    assert by_subject["other-1"] == [1, 2, 3] and by_subject["other-2"] == [1, 2, 3]
    assert by_subject["big"] == [1, 2]  # the service's writes; the huge row never went
    await db.execute("DELETE FROM outbox WHERE id = $1", row_id)  # not an event of ours


async def _others_published(db: asyncpg.Connection) -> bool:
    n = await db.fetchval(
        "SELECT count(*) FROM outbox WHERE published_at IS NULL AND aggregateid <> 'big'"
    )
    return n == 0
