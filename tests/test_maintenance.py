"""Projection rebuild, evidence retention and dry-run replays."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from consent.adapters.db import make_engine, make_sessionmaker
from consent.service import replay as replay_svc
from consent.service.retention import purge_evidence
from consentctl.ledger import verify_all
from consentctl.maintenance import rebuild
from tests.conftest import admin
from tests.support import create_replay_job


async def _setup(client) -> None:  # type: ignore[no-untyped-def]
    for sid, purposes in [
        ("p1", {"analytics": "granted", "sale": "denied"}),
        ("p2", {"marketing_email": "granted"}),
        ("p1", {"analytics": "denied"}),
    ]:
        r = await client.patch(
            f"/v1/subjects/{sid}/preferences", headers=admin(), json={"purposes": purposes}
        )
        assert r.status_code == 200


async def test_state_rebuild_reports_then_fixes(client, settings, db):
    await _setup(client)
    assert await rebuild(settings.database_url, apply=False) == []
    await db.execute(
        "UPDATE consent_state SET status = 'granted' "
        "WHERE subject_id = 'p1' AND purpose = 'analytics'"
    )
    await db.execute("DELETE FROM consent_state WHERE subject_id = 'p2'")
    await db.execute(
        "INSERT INTO consent_state (subject_id, purpose, status, source, sequence, "
        "actor_type, updated_at) VALUES ('p2', 'share', 'granted', 'api', 9, "
        "'service', now())"
    )
    diffs = await rebuild(settings.database_url, apply=False)
    assert {(d["subject_id"], d["purpose"]) for d in diffs} == {
        ("p1", "analytics"),
        ("p2", "marketing_email"),
        ("p2", "share"),
    }
    _, problems = await verify_all(settings.database_url, show_progress=False)
    assert problems  # ledger verify sees the projection drift too
    assert len(await rebuild(settings.database_url, apply=True)) == 3
    assert await rebuild(settings.database_url, apply=False) == []
    _, problems = await verify_all(settings.database_url, show_progress=False)
    assert problems == []
    r = await client.get("/v1/subjects/p1/decisions?purpose=analytics", headers=admin())
    assert r.json()["reason"] == "explicit_denial"
    assert await db.fetchval("SELECT count(*) FROM audit_log WHERE action = 'state.rebuild'") == 1


async def test_evidence_retention_keeps_the_chain_verifiable(client, settings, db):
    await _setup(client)
    assert await db.fetchval("SELECT count(*) FROM consent_evidence") == 3
    engine = make_engine(settings.database_url)
    try:
        sessions = make_sessionmaker(engine)
        assert await purge_evidence(sessions, datetime.now(UTC)) == 0
        purged = await purge_evidence(sessions, datetime.now(UTC) + timedelta(days=5000))
    finally:
        await engine.dispose()
    assert purged == 3
    _, problems = await verify_all(settings.database_url, show_progress=False)
    assert problems == []
    history = (await client.get("/v1/subjects/p1/history", headers=admin())).json()["items"]
    assert all(e["evidence"] is None and len(e["evidence_hash"]) == 64 for e in history)


async def test_dry_run_replay_sends_nothing(client, settings, db):
    await _setup(client)
    outbox_before = await db.fetchval("SELECT count(*) FROM outbox")
    engine = make_engine(settings.database_url)
    try:
        sessions = make_sessionmaker(engine)
        job = await create_replay_job(sessions, {}, dry_run=True)
        first = await replay_svc.run_batch(sessions, job.id, {})
        assert first is not None and first.subjects == 2 and len(first.samples) == 2
        assert all(s["replay"] is True for s in first.samples)
        done = await replay_svc.run_batch(sessions, job.id, {})
        assert done is not None and done.finished
    finally:
        await engine.dispose()
    assert await db.fetchval("SELECT count(*) FROM outbox") == outbox_before
    assert await db.fetchval("SELECT count(*) FROM deliveries") == 0
