"""Issue 14 over HTTP: a minor cannot opt out of protection, provenance cannot be forged,
and credentials carry only what they need. Every refusal is a problem document and
writes nothing (ledger, outbox, idempotency records)."""

from __future__ import annotations

import json
from typing import Any

import asyncpg
import pytest

from consent.api.auth import hash_key, new_key
from tests.conftest import admin, user
from tests.test_minors_guardians import born_years_ago, verification

PREFS = "/v1/subjects/{}/preferences"


async def key(db: asyncpg.Connection, *scopes: str) -> dict[str, str]:
    key_id, raw = new_key()
    await db.execute(
        "INSERT INTO api_keys (id, key_hash, name, scopes) VALUES ($1, $2, 'test', $3)",
        key_id,
        hash_key(raw),
        list(scopes),
    )
    return {"X-API-Key": raw}


async def counts(db: asyncpg.Connection) -> tuple[int, ...]:
    return tuple(
        [
            await db.fetchval(f"SELECT count(*) FROM {t}")
            for t in ("consent_ledger", "outbox", "idempotency_keys", "guardian_links")
        ]
    )


def problem(r: Any, status: int, code: str | None = None) -> dict[str, Any]:
    assert r.status_code == status, (r.status_code, r.text)
    assert r.headers["content-type"].startswith("application/problem+json")
    body: dict[str, Any] = r.json()
    assert body["status"] == status and body["detail"]
    if code:
        assert body.get("code") == code, body
    return body


async def test_a_child_cannot_escape_guardian_consent(client, db):
    birth = born_years_ago(11)  # born in 2015: a child in DE
    r = await client.put(
        "/v1/subjects/kid-1", json={"jurisdiction": "DE", "birth_date": birth}, headers=admin()
    )
    assert r.json()["age_status"] == "child"
    grant = {"purposes": {"marketing_email": "granted"}}
    problem(await client.patch(PREFS.format("kid-1"), json=grant, headers=user("kid-1")), 409,
            "guardian_required")  # fmt: skip
    plain = await key(db, "preferences:write")
    before = await counts(db)
    attempts = [
        {"jurisdiction": "DE", "birth_date": None},  # "no birth date": treated as an adult
        {"jurisdiction": "US-NY", "birth_date": birth},  # moving makes a 14-year-old adult
        {"jurisdiction": "US-NY"},
        {"jurisdiction": "DE", "birth_date": born_years_ago(30)},
    ]
    for body in attempts:
        for who in (user("kid-1"), plain):
            r = await client.put("/v1/subjects/kid-1", json=body, headers=who)
            problem(r, 403, "minor_profile_locked")
    assert await counts(db) == before
    r = await client.patch(PREFS.format("kid-1"), json=grant, headers=user("kid-1"))
    problem(r, 409, "guardian_required")
    r = await client.get(PREFS.format("kid-1"), headers=user("kid-1"))
    assert r.json()["age_status"] == "child" and r.json()["jurisdiction"] == "DE"

    # sending the profile unchanged is not a change: 200, no new sequence
    same = {"jurisdiction": "DE", "birth_date": birth}
    r = await client.put("/v1/subjects/kid-1", json=same, headers=user("kid-1"))
    assert r.status_code == 200 and r.json()["sequence"] == 1
    r = await client.put("/v1/subjects/kid-1", json={"jurisdiction": "DE"}, headers=plain)
    assert r.status_code == 200 and r.json()["sequence"] == 1

    # a linked guardian may record a move; a minors:write service a corrected birth date
    link = {"guardian_id": "mum-1", "verification": verification()}
    minors = await key(db, "minors:write")
    assert (
        await client.post("/v1/subjects/kid-1/guardians", json=link, headers=minors)
    ).status_code == 201
    r = await client.put(
        "/v1/subjects/kid-1",
        json={"jurisdiction": "FR", "birth_date": birth},
        headers=user("mum-1"),
    )
    assert r.status_code == 200, r.text
    assert r.json()["jurisdiction"] == "FR" and r.json()["age_status"] == "child"
    row = await db.fetchrow(
        "SELECT channel, actor_type, actor_id FROM consent_ledger "
        "WHERE subject_id = 'kid-1' ORDER BY sequence DESC LIMIT 1"
    )
    assert tuple(row) == ("guardian", "guardian", "mum-1")
    corrected = born_years_ago(17)
    r = await client.put(
        "/v1/subjects/kid-1", json={"jurisdiction": "FR", "birth_date": corrected}, headers=minors
    )
    assert r.status_code == 200 and r.json()["age_status"] == "adult"
    # no longer a minor: the lock is gone (it protects minors, not adults)
    r = await client.put("/v1/subjects/kid-1", json={"jurisdiction": "DE"}, headers=user("kid-1"))
    assert r.status_code == 200, r.text


async def test_adding_protection_is_never_locked(client):
    r = await client.put("/v1/subjects/newbie", json={"jurisdiction": "DE"}, headers=user("newbie"))
    assert r.json()["age_status"] == "unknown"
    body = {"jurisdiction": "DE", "birth_date": born_years_ago(12)}
    r = await client.put("/v1/subjects/newbie", json=body, headers=user("newbie"))
    assert r.status_code == 200 and r.json()["age_status"] == "child"
    r = await client.put(
        "/v1/subjects/newbie",
        json={"jurisdiction": "DE", "birth_date": None},
        headers=user("newbie"),
    )
    problem(r, 403, "minor_profile_locked")


@pytest.mark.parametrize("channel", ["operator", "gpc", "guardian", "system", "api", "import"])
async def test_a_user_token_cannot_forge_provenance(client, db, channel):
    body = {"purposes": {"sale": "denied"}, "context": {"channel": channel}}
    before = await counts(db)
    r = await client.patch(PREFS.format("u-1"), json=body, headers=user("u-1"))
    problem(r, 422)
    assert await counts(db) == before


@pytest.mark.parametrize("channel", ["operator", "gpc", "guardian", "system", "fax"])
async def test_a_service_key_cannot_forge_provenance(client, db, channel):
    body = {"purposes": {"sale": "denied"}, "context": {"channel": channel}}
    headers = await key(db, "preferences:write")
    before = await counts(db)
    problem(await client.patch(PREFS.format("u-1"), json=body, headers=headers), 422)
    assert await counts(db) == before


async def test_channels_each_credential_may_record(client, db):
    for who, channel in ((user("u-2"), "ios"), (user("u-2"), "android"), (user("u-2"), "web")):
        body = {"purposes": {"analytics": "granted"}, "context": {"channel": channel}}
        body["purposes"]["analytics"] = "denied" if channel == "android" else "granted"
        r = await client.patch(PREFS.format("u-2"), json=body, headers=who)
        assert r.status_code == 200, r.text
    svc = await key(db, "preferences:write")
    for channel, status in (("import", "denied"), ("api", "granted")):
        body = {"purposes": {"analytics": status}, "context": {"channel": channel}}
        assert (await client.patch(PREFS.format("u-2"), json=body, headers=svc)).status_code == 200
    rows = await db.fetch(
        "SELECT channel FROM consent_ledger WHERE subject_id = 'u-2' ORDER BY sequence"
    )
    assert [r["channel"] for r in rows] == ["ios", "android", "web", "import", "api"]
    r = await client.get(PREFS.format("u-2"), headers=user("u-2"))
    assert r.json()["purposes"]["analytics"]["source"] == "api"


async def test_a_guardian_is_recorded_as_guardian_with_the_device_in_evidence(client, db):
    body = {"jurisdiction": "DE", "birth_date": born_years_ago(10)}
    await client.put("/v1/subjects/kid-2", json=body, headers=admin())
    link = {"guardian_id": "dad-2", "verification": verification()}
    await client.post("/v1/subjects/kid-2/guardians", json=link, headers=admin())
    patch = {"purposes": {"marketing_email": "granted"}, "context": {"channel": "ios"}}
    r = await client.patch(PREFS.format("kid-2"), json=patch, headers=user("dad-2"))
    assert r.status_code == 200, r.text
    assert r.json()["purposes"]["marketing_email"]["source"] == "guardian"
    row = await db.fetchrow(
        "SELECT l.channel, e.evidence::text AS ev FROM consent_ledger l "
        "JOIN consent_evidence e USING (subject_id, sequence) "
        "WHERE l.subject_id = 'kid-2' AND l.type = 'consent.changed'"
    )
    assert row["channel"] == "guardian"
    assert json.loads(row["ev"])["device_channel"] == "ios"
    bad = {"purposes": {"marketing_email": "granted"}, "context": {"channel": "operator"}}
    problem(await client.patch(PREFS.format("kid-2"), json=bad, headers=user("dad-2")), 422)


async def test_erasure_and_guardian_links_left_preferences_write(client, db):
    body = {"jurisdiction": "DE", "birth_date": born_years_ago(9)}
    await client.put("/v1/subjects/kid-3", json=body, headers=admin())
    await client.put("/v1/subjects/adult-3", json={"jurisdiction": "DE"}, headers=admin())
    plain = await key(db, "preferences:read", "preferences:write", "decisions:read")
    link = {"guardian_id": "attacker", "verification": verification("email_plus")}
    before = await counts(db)
    problem(await client.post("/v1/subjects/adult-3/erasure", headers=plain), 403)
    problem(await client.post("/v1/subjects/kid-3/guardians", json=link, headers=plain), 403)
    assert await counts(db) == before

    minors = await key(db, "minors:write")
    problem(await client.post("/v1/subjects/adult-3/erasure", headers=minors), 403)
    r = await client.post("/v1/subjects/kid-3/guardians", json=link, headers=minors)
    assert r.status_code == 201, r.text
    problem(await client.delete("/v1/subjects/kid-3/guardians/attacker", headers=plain), 403)
    r = await client.delete("/v1/subjects/kid-3/guardians/attacker", headers=minors)
    assert r.status_code == 204, r.text

    eraser = await key(db, "rights:erase")
    problem(await client.post("/v1/subjects/kid-3/guardians", json=link, headers=eraser), 403)
    assert (await client.post("/v1/subjects/adult-3/erasure", headers=eraser)).status_code == 202

    # a user token may still request its own erasure, and only its own
    problem(await client.post("/v1/subjects/u-4/erasure", headers=user("u-5")), 403)
    assert (await client.post("/v1/subjects/u-4/erasure", headers=user("u-4"))).status_code == 202


async def test_idempotency_keys_do_not_collide_between_a_key_and_a_subject(client, db):
    key_id, raw = new_key()
    await db.execute(
        "INSERT INTO api_keys (id, key_hash, name, scopes) VALUES ($1, $2, 't', $3)",
        key_id,
        hash_key(raw),
        ["preferences:write"],
    )
    idem = {"Idempotency-Key": "same-key-1"}
    r = await client.patch(
        PREFS.format(key_id),
        json={"purposes": {"analytics": "granted"}},
        headers={"X-API-Key": raw, **idem},
    )
    assert r.status_code == 200, r.text
    # the subject whose id equals the key id uses the same Idempotency-Key for another request
    r = await client.patch(
        PREFS.format(key_id),
        json={"purposes": {"analytics": "denied"}},
        headers={**user(key_id), **idem},
    )
    assert r.status_code == 200, r.text
    assert "idempotent-replayed" not in r.headers
    assert r.json()["purposes"]["analytics"]["status"] == "denied"
    owners = await db.fetch("SELECT principal FROM idempotency_keys ORDER BY principal")
    assert [o["principal"] for o in owners] == [f"key:{key_id}", f"user:{key_id}"]


async def test_evidence_is_shown_to_whom_it_belongs(client, db):
    body = {"jurisdiction": "DE", "birth_date": born_years_ago(10)}
    await client.put("/v1/subjects/kid-5", json=body, headers=admin())
    link = {"guardian_id": "mum-5", "verification": verification()}
    await client.post("/v1/subjects/kid-5/guardians", json=link, headers=admin())
    grant = {"purposes": {"analytics": "granted"}, "context": {"channel": "web"}}
    headers = {**user("mum-5"), "User-Agent": "Mum's phone"}
    assert (
        await client.patch(PREFS.format("kid-5"), json=grant, headers=headers)
    ).status_code == 200
    deny = {"purposes": {"personalization": "denied"}}
    headers = {**user("kid-5"), "User-Agent": "Kid's tablet"}
    assert (
        await client.patch(PREFS.format("kid-5"), json=deny, headers=headers)
    ).status_code == 200

    async def evidence(headers: dict[str, str]) -> dict[str, dict[str, Any]]:
        r = await client.get("/v1/subjects/kid-5/history", headers=headers)
        assert r.status_code == 200, r.text
        return {e["type"] + ":" + e["actor"]["type"]: e["evidence"] for e in r.json()["items"]}

    full = await evidence(admin())
    assert full["subject.guardian_linked:operator"]["verification"]["reference"] == "case-4711"
    assert full["consent.changed:guardian"]["user_agent"] == "Mum's phone"
    assert full["consent.changed:guardian"]["ip_hash"]

    child = await evidence(user("kid-5"))
    assert child["consent.changed:subject"]["user_agent"] == "Kid's tablet"  # their own act
    mums = child["consent.changed:guardian"]
    assert "user_agent" not in mums and "ip_hash" not in mums
    assert set(mums["withheld"]) == {"user_agent", "ip_hash"}
    assert mums["device_channel"] == "web"
    linked = child["subject.guardian_linked:operator"]["verification"]
    assert "reference" not in linked and linked["method"] == "signed_form"

    mum = await evidence(user("mum-5"))
    assert mum["consent.changed:guardian"]["user_agent"] == "Mum's phone"
    assert "user_agent" not in mum["consent.changed:subject"]  # the child's device

    service = await evidence(await key(db, "preferences:read"))
    assert all("ip_hash" not in (ev or {}) for ev in service.values())

    r = await client.get("/v1/subjects/kid-5/export", headers=user("kid-5"))
    text = r.text
    assert "Mum's phone" not in text and "case-4711" not in text and "Kid's tablet" in text
    # the chain still verifies: hashes are untouched by the filtering
    r = await client.get("/v1/subjects/kid-5/history", headers=user("kid-5"))
    assert [e["evidence_hash"] for e in r.json()["items"]] == [
        row["evidence_hash"]
        for row in await db.fetch(
            "SELECT evidence_hash FROM consent_ledger WHERE subject_id = 'kid-5' "
            "ORDER BY sequence DESC"
        )
    ]


async def test_hashed_ip_follows_trusted_proxies(settings, db):
    import hashlib

    import httpx

    from consent.api.app import create_app

    salt = settings.ip_hash_salt.get_secret_value()

    def hashed(ip: str) -> str:
        return hashlib.sha256(f"{salt}:{ip}".encode()).hexdigest()

    async def recorded(trusted: list[str], subject: str) -> str:
        app = create_app(settings.model_copy(update={"trusted_proxies": trusted}))
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app, client=("10.0.0.7", 5000))
            async with httpx.AsyncClient(transport=transport, base_url="http://api") as c:
                r = await c.patch(
                    PREFS.format(subject),
                    json={"purposes": {"analytics": "granted"}},
                    headers={**user(subject), "X-Forwarded-For": "6.6.6.6, 198.51.100.4"},
                )
                assert r.status_code == 200, r.text
        ev = await db.fetchval(
            "SELECT evidence::text FROM consent_evidence WHERE subject_id = $1", subject
        )
        return str(json.loads(ev)["ip_hash"])

    assert await recorded([], "ip-1") == hashed("10.0.0.7")  # the header is not believed
    assert await recorded(["10.0.0.0/8"], "ip-2") == hashed("198.51.100.4")
