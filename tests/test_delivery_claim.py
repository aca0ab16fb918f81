"""The claim, against PostgreSQL: one statement leases what is due and marks superseded,
in the same statement, what a processor already has (a live event at or below its receipt,
a replay below it); erasures are always sent; one delivery per subject at a time."""

from __future__ import annotations

import uuid

import asyncpg

from consent_common.db import plain_url
from propagator.db import SERVER_SETTINGS
from propagator.unit_of_work import unit_of_work

ROW = """
INSERT INTO deliveries (id, event_id, event_type, subject_id, sequence, processor, status,
    attempts, max_attempts, payload, occurred_at, next_attempt_at, replay, created_at, updated_at)
VALUES ($1, $2, $3, $4, $5, 'email', 'pending', 0, 8, '{}'::jsonb, now(), now(), $6, now(), now())
"""


async def test_claim_leases_due_rows_and_supersedes_what_was_already_applied(
    db_url: str, db: asyncpg.Connection
) -> None:
    await db.executemany(
        "INSERT INTO processor_receipts (processor, subject_id, last_delivered_sequence, "
        "last_event_id, delivered_at) VALUES ('email', $1, $2, 'x', now())",
        [("s1", 5), ("s2", 5), ("s3", 5), ("s4", 9)],
    )
    rows = {
        "live-below-receipt": ("consent.changed", "s1", 4, False),
        "replay-of-current": ("consent.changed", "s2", 5, True),
        "replay-below-receipt": ("consent.changed", "s3", 4, True),
        "erasure-below-receipt": ("subject.erasure_requested", "s4", 3, False),
        "new-subject": ("consent.changed", "s5", 1, False),
        "new-subject-next": ("consent.changed", "s5", 2, False),  # waits for sequence 1
    }
    for event_id, (etype, subject, seq, replay) in rows.items():
        await db.execute(ROW, uuid.uuid4(), event_id, etype, subject, seq, replay)

    pool = await asyncpg.create_pool(
        plain_url(db_url), min_size=1, max_size=2, server_settings=SERVER_SETTINGS
    )
    assert pool is not None
    try:
        async with unit_of_work(pool, atomic=False) as uow:
            claimed = await uow.deliveries.claim("email", 32, 30.0)
    finally:
        await pool.close()

    assert sorted(r.event_id for r in claimed) == [
        "erasure-below-receipt",
        "new-subject",
        "replay-of-current",
    ]
    state = {
        r["event_id"]: r
        for r in await db.fetch(
            "SELECT event_id, status, attempts, lease_until IS NOT NULL AS leased, last_error "
            "FROM deliveries"
        )
    }
    for superseded in ("live-below-receipt", "replay-below-receipt"):
        assert state[superseded]["status"] == "superseded"
        assert not state[superseded]["leased"]
        assert state[superseded]["last_error"] == "a newer event was already applied"
    for sent in ("erasure-below-receipt", "new-subject", "replay-of-current"):
        assert state[sent]["status"] == "pending" and state[sent]["leased"]
        assert state[sent]["attempts"] == 1
    assert not state["new-subject-next"]["leased"]
    assert state["new-subject-next"]["attempts"] == 0
