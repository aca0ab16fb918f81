"""Tampering as a database superuser would (issue 19): edit, delete, reorder and truncate
ledger rows and the projections decisions read, with the triggers switched off. Each is
reported by ``ledger verify`` (naming subject, sequence and field) or makes a proof taken
from the API stop verifying against the checkpoint published outside the database."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import asyncpg
import httpx
import pytest

from consent.adapters.db import make_engine, make_sessionmaker
from consent.api.app import create_app
from consent.domain import merkle
from consent.domain.hashing import GENESIS
from consent.domain.ledger import ChainedEntry, ChainProblem
from consent.service.context import utcnow
from consent.settings import Settings
from consent.transparency import verify
from consent.transparency.keys import published_jwks, signing_key
from consent.transparency.log import LEDGER_FIELDS, checkpoint_now, decode_entry
from consentctl.ledger import verify_all
from consentctl.log_audit import read_file
from tests.conftest import admin, user
from tests.test_minors_guardians import born_years_ago, verification

Tamper = Callable[[asyncpg.Connection], Awaitable[None]]


@pytest.fixture
def logged(settings: Settings, tmp_path: Path) -> Settings:
    return settings.model_copy(
        update={
            "checkpoint_interval_s": 3600.0,
            "checkpoint_file": str(tmp_path / "checkpoints.jsonl"),
        }
    )


@pytest.fixture
async def api(logged: Settings) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(logged)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://api") as c:
            yield c


async def checkpoint(settings: Settings) -> None:
    engine = make_engine(settings.database_url or "", pool_size=1)
    try:
        key = signing_key(settings.checkpoint_key_file, settings.data_dir)
        await checkpoint_now(
            make_sessionmaker(engine), key, utcnow(), settings.checkpoint_file, wait=True
        )
    finally:
        await engine.dispose()


async def ok(r: httpx.Response) -> httpx.Response:
    assert r.status_code < 300, r.text
    return r


async def history(api: httpx.AsyncClient) -> None:
    """Subjects with grants that expire, a GPC opt-out, a guardian link, a denial."""
    for sid in ("ann", "bob", "cat"):
        await ok(await api.put(f"/v1/subjects/{sid}", json={"jurisdiction": "DE"}, headers=admin()))
        await ok(
            await api.patch(
                f"/v1/subjects/{sid}/preferences",
                json={
                    "purposes": {
                        "analytics": "granted",
                        "marketing_email": "granted",
                        "cookies_analytics": "granted",
                    }
                },
                headers=user(sid),
            )
        )
    await ok(
        await api.patch(
            "/v1/subjects/bob/preferences",
            json={"purposes": {"marketing_email": "denied"}},
            headers=user("bob"),
        )
    )
    await ok(await api.get("/v1/subjects/cat/preferences", headers={**user("cat"), "Sec-GPC": "1"}))
    body = {"jurisdiction": "DE", "birth_date": born_years_ago(10)}
    await ok(await api.put("/v1/subjects/kid", json=body, headers=admin()))
    await ok(
        await api.post(
            "/v1/subjects/kid/guardians",
            json={"guardian_id": "mum", "verification": verification()},
            headers=admin(),
        )
    )


async def problems_now(settings: Settings) -> list[ChainProblem]:
    key = signing_key(settings.checkpoint_key_file, settings.data_dir)
    published = read_file(settings.checkpoint_file or "")
    _, found = await verify_all(
        settings.database_url or "",
        show_progress=False,
        published=published,
        jwks=published_jwks(key, None),
    )
    return found


async def superuser(db: asyncpg.Connection, *sql: str) -> None:
    await db.execute("SET session_replication_role = replica")  # triggers off
    for statement in sql:
        await db.execute(statement)
    await db.execute("SET session_replication_role = origin")


async def rechain(db: asyncpg.Connection, sid: str) -> None:
    """What a careful attacker does after editing: recompute the subject's chain and head,
    and the stored tree's nodes, so every hash in the database agrees again."""
    rows = [
        decode_entry(r)
        for r in await db.fetch(
            f"SELECT {LEDGER_FIELDS}, leaf_index FROM consent_ledger WHERE subject_id = $1 "
            "ORDER BY sequence",
            sid,
        )
    ]
    await db.execute("SET session_replication_role = replica")
    prev = GENESIS
    for r in rows:
        r["prev_hash"] = prev
        digest = ChainedEntry.of(r).hash()
        await db.execute(
            "UPDATE consent_ledger SET prev_hash = $3, hash = $4 WHERE subject_id = $1 "
            "AND sequence = $2",
            sid,
            r["sequence"],
            prev,
            digest,
        )
        prev = digest
    await db.execute(
        "UPDATE subjects SET last_hash = $2, sequence = $3 WHERE subject_id = $1",
        sid,
        prev,
        len(rows),
    )
    # the tree's nodes, rebuilt from the (edited) leaves
    leaves = [
        ChainedEntry.of(decode_entry(r)).leaf_hash()
        for r in await db.fetch(
            f"SELECT {LEDGER_FIELDS} FROM consent_ledger WHERE leaf_index IS NOT NULL "
            "ORDER BY leaf_index"
        )
    ]
    await db.execute("DELETE FROM log_nodes")
    nodes = {(0, i): h for i, h in enumerate(leaves)}
    for level, i in merkle.parents_to_add(0, len(leaves)):
        nodes[(level, i)] = merkle.node_hash(
            nodes[(level - 1, 2 * i)], nodes[(level - 1, 2 * i + 1)]
        )
    await db.executemany(
        "INSERT INTO log_nodes (level, idx, hash) VALUES ($1, $2, $3)",
        [(lv, ix, h) for (lv, ix), h in nodes.items()],
    )
    await db.execute("SET session_replication_role = origin")


async def test_untouched_history_verifies_and_proofs_hold(api, logged, db):
    await history(api)
    await checkpoint(logged)
    assert await problems_now(logged) == []


def _fields(found: list[ChainProblem]) -> set[tuple[str, str | None]]:
    return {(p.subject_id, p.field) for p in found}


TAMPERINGS: dict[str, tuple[list[str], set[tuple[str, str | None]]]] = {
    "edit an entry": (
        ["UPDATE consent_ledger SET channel = 'api' WHERE subject_id = 'bob' AND sequence = 3"],
        {("bob", "hash")},
    ),
    "delete an entry in the middle": (
        ["DELETE FROM consent_ledger WHERE subject_id = 'ann' AND sequence = 1"],
        {("ann", "sequence")},
    ),
    "delete the newest entry and its traces": (
        [
            "DELETE FROM consent_ledger WHERE subject_id = 'bob' AND sequence = 3",
            "UPDATE subjects s SET sequence = 2, last_hash = l.hash FROM consent_ledger l "
            "WHERE s.subject_id = 'bob' AND l.subject_id = 'bob' AND l.sequence = 2",
            "UPDATE consent_state SET status = 'granted', sequence = 2 "
            "WHERE subject_id = 'bob' AND purpose = 'marketing_email'",
        ],
        {("(log)", "leaf_index"), ("(log)", "root_hash")},
    ),
    "reorder two leaves": (
        [
            "UPDATE consent_ledger SET leaf_index = -1 WHERE leaf_index = 0",
            "UPDATE consent_ledger SET leaf_index = 0 WHERE leaf_index = 1",
            "UPDATE consent_ledger SET leaf_index = 1 WHERE leaf_index = -1",
        ],
        {("(log)", "root_hash")},
    ),
    "truncate the ledger": (["TRUNCATE consent_ledger"], {("ann", "subjects.sequence")}),
    "clear an expiry": (
        [
            "UPDATE consent_state SET expires_at = NULL WHERE subject_id = 'ann' "
            "AND purpose = 'cookies_analytics'"
        ],
        {("ann", "consent_state.expires_at")},
    ),
    "claim an operator acted": (
        [
            "UPDATE consent_state SET actor_type = 'operator', actor_id = 'ops-1' "
            "WHERE subject_id = 'cat' AND purpose = 'sale'"
        ],
        {("cat", "consent_state.actor_type")},
    ),
    "flip a status": (
        [
            "UPDATE consent_state SET status = 'granted' WHERE subject_id = 'bob' "
            "AND purpose = 'marketing_email'"
        ],
        {("bob", "consent_state.status")},
    ),
    "move the subject": (
        ["UPDATE subjects SET jurisdiction = 'US-CA' WHERE subject_id = 'ann'"],
        {("ann", "subjects.jurisdiction")},
    ),
    "forget the GPC signal": (
        ["UPDATE subjects SET gpc_opted_out_at = NULL WHERE subject_id = 'cat'"],
        {("cat", "subjects.gpc_opted_out_at")},
    ),
    "revoke a guardian silently": (
        ["UPDATE guardian_links SET revoked_at = now() WHERE subject_id = 'kid'"],
        {("kid", "guardian_links")},
    ),
    "link a guardian nobody verified": (
        [
            "INSERT INTO guardian_links (id, subject_id, guardian_id, method, reference, "
            "verified_at, linked_at) VALUES (gen_random_uuid(), 'kid', 'eve', 'signed_form', "
            "'x', now(), now())"
        ],
        {("kid", "guardian_links")},
    ),
    "edit evidence": (
        [
            "UPDATE consent_evidence SET evidence = evidence || '{\"gpc\": true}' "
            "WHERE subject_id = 'ann' AND sequence = 2"
        ],
        {("ann", "evidence")},
    ),
    "drop a subject's rows": (
        [
            "DELETE FROM consent_state WHERE subject_id = 'bob'",
            "DELETE FROM subjects WHERE subject_id = 'bob'",
        ],
        {("bob", "subjects"), ("bob", "consent_state.analytics")},
    ),
}


@pytest.mark.parametrize("name", sorted(TAMPERINGS))
async def test_tampering_is_reported(api, logged, db, name):
    await history(api)
    await checkpoint(logged)
    sql, expected = TAMPERINGS[name]
    await superuser(db, *sql)
    found = await problems_now(logged)
    assert found, f"{name}: not reported"
    assert expected <= _fields(found), (name, [(p.subject_id, p.field, p.problem) for p in found])
    for p in found:
        assert p.subject_id and p.field and p.sequence is not None


async def test_a_rewritten_history_breaks_the_published_checkpoint_and_the_proof(api, logged, db):
    """The careful attacker: flips bob's denial to a grant and recomputes the chain, the
    head, the projection and the stored tree. The database agrees with itself; the
    checkpoint published outside it does not, and bob's proof no longer verifies."""
    await history(api)
    await checkpoint(logged)
    r = await api.get("/v1/subjects/bob/proof?sequence=3", headers=user("bob"))
    assert r.status_code == 200
    jwks = (await api.get("/.well-known/consent-keys.json")).json()
    verify.verify_proof(r.json(), jwks)
    published = read_file(logged.checkpoint_file or "")[-1]

    changes = json.dumps([{"purpose": "marketing_email", "from": "granted", "to": "granted"}])
    await superuser(
        db,
        f"UPDATE consent_ledger SET changes = '{changes}' WHERE subject_id = 'bob' "
        "AND sequence = 3",
        "UPDATE consent_state SET status = 'granted' WHERE subject_id = 'bob' "
        "AND purpose = 'marketing_email'",
    )
    await rechain(db, "bob")
    found = await problems_now(logged)
    assert {(p.subject_id, p.field) for p in found} == {("(log)", "root_hash")}, found
    assert "leaves [0," in found[0].problem

    doc = (await api.get("/v1/subjects/bob/proof?sequence=3", headers=user("bob"))).json()
    assert doc["entry"]["entry"]["changes"][0]["to"] == "granted"
    doc["checkpoint"] = published  # what the person or auditor holds
    with pytest.raises(verify.VerificationError):
        verify.verify_proof(doc, jwks)


async def test_runtime_role_cannot_rewrite_history(api, logged, db, db_url):
    """Least privilege: as the runtime role the service still works (writes, sequencing,
    checkpoints), and every attempt on history fails with a permission error."""
    from consentctl.db_roles import CONSENT, PROPAGATOR, apply

    await history(api)
    await checkpoint(logged)
    await apply(db, CONSENT, runtime_password="runtime-test-pw")
    await apply(db, PROPAGATOR, runtime_password="runtime-test-pw2")
    import asyncpg as pg

    from consent_common.db import plain_url

    plain = plain_url(db_url)
    host_part = plain.split("@", 1)[-1] if "@" in plain else plain.split("://", 1)[1]
    rt_url = f"postgresql://consent_runtime:runtime-test-pw@{host_part}"
    rt = await pg.connect(rt_url)
    try:
        assert await rt.fetchval("SELECT current_user") == "consent_runtime"
        for statement in (
            "UPDATE consent_ledger SET channel = 'api'",
            "DELETE FROM consent_ledger",
            "TRUNCATE consent_ledger",
            "TRUNCATE consent_state",
            "ALTER TABLE consent_ledger DISABLE TRIGGER consent_ledger_no_update",
            "DROP TRIGGER consent_ledger_no_truncate ON consent_ledger",
            "DROP TABLE log_checkpoints",
            "DELETE FROM log_checkpoints",
            "UPDATE log_nodes SET hash = '\\x00'",
            "UPDATE alembic_version SET version_num = '0001'",
            "CREATE TABLE consent_ledger_copy (x int)",
            "SELECT * FROM propagator.deliveries",
        ):
            with pytest.raises(pg.InsufficientPrivilegeError):
                await rt.execute(statement)
        # the one update it may make is the sequencer's, and only from NULL
        with pytest.raises(pg.RaiseError):
            await rt.execute("UPDATE consent_ledger SET leaf_index = 99 WHERE leaf_index = 0")
    finally:
        await rt.close()

    # the propagator's runtime role: rows of its own schema (its triggers too), nothing else
    prt = await pg.connect(
        f"postgresql://propagator_runtime:runtime-test-pw2@{host_part}",
        server_settings={"search_path": "propagator"},
    )
    try:
        await prt.execute(
            "INSERT INTO deliveries (id, event_id, event_type, subject_id, sequence, "
            "processor, status, attempts, max_attempts, replay, payload, occurred_at) VALUES "
            "(gen_random_uuid(), 'e-1', 'consent.changed', 'ann', 1, 'email', 'pending', 0, 8, "
            "false, '{}', now())"
        )
        await prt.execute("UPDATE deliveries SET status = 'delivered' WHERE event_id = 'e-1'")
        assert await prt.fetchval("SELECT count(*) FROM propagator_outbox") >= 1  # trigger
        for statement in (
            "TRUNCATE deliveries",
            "DROP TABLE deliveries",
            "SELECT * FROM public.consent_ledger",
        ):
            with pytest.raises(pg.InsufficientPrivilegeError):
                await prt.execute(statement)
    finally:
        await prt.close()

    # the service itself runs as the runtime role: a write, then a signed checkpoint
    as_runtime = logged.model_copy(
        update={"database_url": rt_url.replace("postgresql://", "postgresql+asyncpg://", 1)}
    )
    app = create_app(as_runtime)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://api") as c:
            await ok(
                await c.patch(
                    "/v1/subjects/ann/preferences",
                    json={"purposes": {"analytics": "denied"}},
                    headers=user("ann"),
                )
            )
    await checkpoint(as_runtime)
    assert await problems_now(logged) == []

    # even the owner cannot truncate: the statement-level guard
    await db.execute("SET ROLE consent_owner")
    with pytest.raises(pg.RaiseError, match="append-only"):
        await db.execute("TRUNCATE consent_ledger")
    await db.execute("RESET ROLE")
