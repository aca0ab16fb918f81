"""consentctl's propagator commands, end to end on PostgreSQL: each runs in one of the
propagator's units of work and reads typed rows (``processors list|enable``, ``deliveries
list|redrive``, ``parked list|retry|drop``); what they change, and what they audit, is in
the tables afterwards."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid

import asyncpg
import orjson

DEAD = """
INSERT INTO deliveries (id, event_id, event_type, subject_id, sequence, processor, status,
    attempts, max_attempts, payload, occurred_at, next_attempt_at, replay, created_at,
    updated_at, last_error)
VALUES ($1, 'ev-1', 'consent.changed', 's1', 1, 'email', 'dead', 8, 8, '{}'::jsonb, now(),
    now(), false, now(), now(), 'gave up after 8 attempts: 503')
"""


def consentctl(db_url: str, *args: str) -> str:
    env = {**os.environ, "CONSENT_DATABASE_URL": db_url, "COLUMNS": "200"}
    env.pop("CONSENT_PROCESSORS_FILE", None)
    proc = subprocess.run(
        [sys.executable, "-m", "consentctl.main", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr + proc.stdout
    return proc.stdout


async def test_processor_commands_enable_and_redrive_in_one_unit_of_work(
    db_url: str, db: asyncpg.Connection
) -> None:
    delivery = uuid.uuid4()
    await db.execute(DEAD, delivery)
    await db.execute(
        "INSERT INTO processor_health (processor, failing_since, disabled_at, disabled_reason) "
        "VALUES ('email', now() - interval '6 days', now(), 'failing too long')"
    )
    listed = consentctl(db_url, "processors", "list")
    assert "email" in listed and "disabled" in listed

    assert "redriven: 1" in consentctl(db_url, "processors", "enable", "email")
    health = await db.fetchrow("SELECT disabled_at, failing_since FROM processor_health")
    assert health is not None and health["disabled_at"] is None
    assert await db.fetchval("SELECT status FROM deliveries WHERE id = $1", delivery) == "pending"
    audit = await db.fetchval("SELECT payload FROM propagator_outbox WHERE type = 'audit.recorded'")
    entry = orjson.loads(audit)
    assert (entry["actor"], entry["action"]) == ("cli", "processor.enabled")
    assert entry["counts"] == {"redriven": 1}


async def test_delivery_commands_list_and_redrive(db_url: str, db: asyncpg.Connection) -> None:
    delivery = uuid.uuid4()
    await db.execute(DEAD, delivery)
    listed = consentctl(db_url, "deliveries", "list", "--status", "dead")
    assert str(delivery)[:8] in listed and "gave up after 8" in listed

    assert "redriven: 1" in consentctl(db_url, "deliveries", "redrive", str(delivery))
    row = await db.fetchrow("SELECT status, attempts FROM deliveries WHERE id = $1", delivery)
    assert row is not None and (row["status"], row["attempts"]) == ("pending", 0)
    assert "redriven: 0" in consentctl(db_url, "deliveries", "redrive", "--all")


async def test_parked_commands_list_retry_and_drop(db_url: str, db: asyncpg.Connection) -> None:
    parked_id = await db.fetchval(
        'INSERT INTO parked_records (topic, partition, "offset", key, value, headers, reason) '
        "VALUES ('consent.events.v1', 2, 41, NULL, 'x'::bytea, '[]'::jsonb, 'not JSON') "
        "RETURNING id"
    )
    listed = consentctl(db_url, "parked", "list")
    assert "consent.events.v1" in listed and "not JSON" in listed

    consentctl(db_url, "parked", "retry", str(parked_id))
    asked = "SELECT retry_requested_at IS NOT NULL FROM parked_records WHERE id = $1"
    assert await db.fetchval(asked, parked_id) is True

    consentctl(db_url, "parked", "drop", str(parked_id))
    assert await db.fetchval("SELECT count(*) FROM parked_records") == 0
    scope = await db.fetchval("SELECT scope FROM audit_log WHERE action = 'parked.drop'")
    assert orjson.loads(scope) == {
        "parked_id": parked_id,
        "topic": "consent.events.v1",
        "partition": 2,
        "offset": 41,
    }
