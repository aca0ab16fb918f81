"""Guardians of minors end to end over HTTP: link, act for the minor, revoke, discovery."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg

from consent.api.auth import hash_key, new_key
from tests.conftest import admin, user

PREFS = "/v1/subjects/{}/preferences"


def born_years_ago(years: float) -> str:
    """A birth date safely inside the given age (no birthday nearby)."""
    return (datetime.now(UTC).date() - timedelta(days=int(years * 365.25))).isoformat()


async def make_key(db: asyncpg.Connection, scopes: list[str]) -> dict[str, str]:
    """A verification service's API key, stored as ``consentctl keys create`` would."""
    key_id, raw = new_key()
    await db.execute(
        "INSERT INTO api_keys (id, key_hash, name, scopes) VALUES ($1, $2, $3, $4)",
        key_id,
        hash_key(raw),
        "verifier",
        scopes,
    )
    return {"X-API-Key": raw}


def verification(method: str = "signed_form") -> dict[str, Any]:
    at = (datetime.now(UTC) - timedelta(hours=1)).isoformat()
    return {"method": method, "reference": "case-4711", "verified_at": at}


async def outbox(db: asyncpg.Connection, subject_id: str) -> list[tuple[str, int, dict]]:
    rows = await db.fetch(
        "SELECT type, sequence, payload::text AS p FROM outbox WHERE aggregateid = $1 "
        "ORDER BY position",
        subject_id,
    )
    return [(r["type"], r["sequence"], json.loads(r["p"])) for r in rows]


def _keys(value: Any) -> set[str]:
    if isinstance(value, dict):
        return set(value) | {k for v in value.values() for k in _keys(v)}
    if isinstance(value, list):
        return {k for v in value for k in _keys(v)}
    return set()


async def assert_no_birth_date_anywhere(db: asyncpg.Connection, *births: str) -> None:
    """No event (outbox), ledger entry or evidence carries a birth date."""
    for table, column in (
        ("outbox", "payload"),
        ("consent_ledger", "detail"),
        ("consent_ledger", "changes"),
        ("consent_evidence", "evidence"),
    ):
        for row in await db.fetch(f"SELECT {column}::text AS v FROM {table}"):
            assert "birth_date" not in _keys(json.loads(row["v"])), (table, row["v"])
            for birth in births:
                assert birth not in row["v"], (table, row["v"])


async def patch(client: Any, sid: str, headers: dict[str, str], **purposes: str) -> Any:
    return await client.patch(PREFS.format(sid), headers=headers, json={"purposes": purposes})


async def expect_problem(r: Any, status: int, code: str | None = None) -> None:
    assert r.status_code == status, r.text
    assert r.headers["content-type"].startswith("application/problem+json")
    if code:
        assert r.json()["code"] == code


async def test_guardian_lifecycle(client, db):
    birth = born_years_ago(15.5)  # 15 in France: a child (policy 16 beats the law's 15)
    r = await client.put(
        "/v1/subjects/kid", json={"jurisdiction": "FR", "birth_date": birth}, headers=admin()
    )
    assert r.status_code == 200, r.text
    assert r.json()["age_status"] == "child"
    assert r.json()["purposes"]["marketing_email"]["reason"] == "minor_without_guardian"
    await client.put(
        "/v1/subjects/kid2", json={"jurisdiction": "FR", "birth_date": birth}, headers=admin()
    )
    verifier = await make_key(db, ["minors:write"])
    before = await outbox(db, "kid")

    # a child's own grant, or a service's, without a guardian: 409, nothing changes
    r = await patch(client, "kid", user("kid"), marketing_email="granted")
    await expect_problem(r, 409, "guardian_required")
    r = await patch(client, "kid", admin(), marketing_email="granted")
    await expect_problem(r, 409, "guardian_required")
    assert await outbox(db, "kid") == before

    # linking takes a service key with minors:write, never a user's token
    body = {"guardian_id": "mum", "verification": verification()}
    r = await client.post("/v1/subjects/kid/guardians", json=body, headers=user("mum"))
    await expect_problem(r, 403)
    r = await client.post("/v1/subjects/kid/guardians", json=body, headers=verifier)
    assert r.status_code == 201, r.text
    assert r.json()["guardian_id"] == "mum" and r.json()["verification_method"] == "signed_form"
    r = await client.post("/v1/subjects/kid/guardians", json=body, headers=verifier)
    await expect_problem(r, 409, "guardian_already_linked")
    r = await client.post(
        "/v1/subjects/kid/guardians",
        json={"guardian_id": "dad", "verification": verification("government_id")},
        headers=admin(),
    )
    assert r.status_code == 201, r.text
    r = await client.get("/v1/subjects/kid/guardians", headers=admin())
    assert {g["guardian_id"] for g in r.json()["items"]} == {"mum", "dad"}

    # the minor's own token still may not grant, even with guardians linked
    r = await patch(client, "kid", user("kid"), marketing_email="granted")
    await expect_problem(r, 409, "guardian_required")

    # a linked guardian reads and changes the minor's preferences
    r = await client.get(PREFS.format("kid"), headers=user("mum"))
    assert r.status_code == 200 and r.json()["age_status"] == "child"
    r = await patch(client, "kid", user("mum"), marketing_email="granted")
    assert r.status_code == 200, r.text
    assert r.json()["purposes"]["marketing_email"]["reason"] == "explicit_grant"
    r = await patch(client, "kid", user("dad"), personalization="granted")
    assert r.status_code == 200, r.text
    r = await patch(client, "kid", user("mum"), sale="granted")
    await expect_problem(r, 409, "child_data_never_sold")
    r = await client.get("/v1/subjects/kid/decisions?purpose=sale", headers=user("mum"))
    assert r.json() == {
        "subject_id": "kid",
        "purpose": "sale",
        "allowed": False,
        "reason": "child_data_never_sold",
        "sequence": await db.fetchval("SELECT sequence FROM subjects WHERE subject_id = 'kid'"),
    }
    actors = await db.fetch(
        "SELECT channel, actor_type, actor_id FROM consent_ledger "
        "WHERE subject_id = 'kid' AND type = 'consent.changed' ORDER BY sequence"
    )
    assert [tuple(a) for a in actors] == [("guardian", "guardian", "mum"),
                                          ("guardian", "guardian", "dad")]  # fmt: skip

    # a guardian acting for a minor not linked to them, or a stranger: 403
    for who, sid in (("mum", "kid2"), ("stranger", "kid")):
        r = await client.get(PREFS.format(sid), headers=user(who))
        await expect_problem(r, 403)
        r = await patch(client, sid, user(who), analytics="granted")
        await expect_problem(r, 403)
    r = await client.delete("/v1/subjects/kid/guardians/mum", headers=user("stranger"))
    await expect_problem(r, 403)
    r = await client.delete("/v1/subjects/kid/guardians/mum", headers=user("dad"))
    await expect_problem(r, 403)

    # revoking mum lapses exactly what mum granted; dad's grant stands
    r = await client.delete("/v1/subjects/kid/guardians/mum", headers=user("mum"))
    assert r.status_code == 204, r.text
    r = await client.delete("/v1/subjects/kid/guardians/mum", headers=admin())
    await expect_problem(r, 404)
    r = await client.get(PREFS.format("kid"), headers=user("dad"))
    purposes = r.json()["purposes"]
    assert purposes["marketing_email"]["status"] == "unset"
    assert purposes["marketing_email"]["allowed"] is False
    assert (purposes["personalization"]["status"], purposes["personalization"]["reason"]) == (
        "granted",
        "explicit_grant",
    )
    r = await client.get(PREFS.format("kid"), headers=user("mum"))
    await expect_problem(r, 403)
    r = await client.get("/v1/subjects/kid/guardians", headers=admin())
    revoked = {g["guardian_id"]: g["revoked_at"] for g in r.json()["items"]}
    assert revoked["mum"] is not None and revoked["dad"] is None

    # dad revoked too: a child without a guardian again
    r = await client.delete("/v1/subjects/kid/guardians/dad", headers=admin())
    assert r.status_code == 204
    r = await client.get(PREFS.format("kid"), headers=user("kid"))
    assert {p["reason"] for p in r.json()["purposes"].values()} == {"minor_without_guardian"}

    events = await outbox(db, "kid")
    assert [(t, s) for t, s, _ in events] == [
        ("subject.updated", 1),
        ("subject.guardian_linked", 2),
        ("subject.guardian_linked", 3),
        ("consent.changed", 4),
        ("consent.changed", 5),
        ("subject.guardian_revoked", 6),
        ("consent.lapsed", 7),
        ("subject.guardian_revoked", 8),
        ("consent.lapsed", 9),
    ]
    linked = events[1][2]
    assert linked["subject_id"] == "kid" and linked["guardian_id"] == "mum"
    assert events[5][2]["guardian_id"] == "mum"
    assert events[6][2]["changes"] == [
        {"purpose": "marketing_email", "from": "granted", "to": "unset"}
    ]
    assert events[6][2]["decisions"]["marketing_email"] is False
    assert events[8][2]["changes"] == [
        {"purpose": "personalization", "from": "granted", "to": "unset"}
    ]
    ledger = await db.fetch("SELECT sequence FROM consent_ledger WHERE subject_id = 'kid'")
    assert sorted(r["sequence"] for r in ledger) == list(range(1, 10))
    await assert_no_birth_date_anywhere(db, birth)


async def test_child_data_never_sold_whatever_is_recorded_then_discovery_erases(client, db):
    """Grants recorded before the age was known: a child's data is still never sold, and
    the operator's discovery of collection without guardian consent triggers erasure."""
    r = await client.put("/v1/subjects/cc", json={"jurisdiction": "US-CA"}, headers=admin())
    assert r.json()["age_status"] == "unknown"
    r = await patch(client, "cc", user("cc"), sale="granted", share="granted")
    assert r.status_code == 200, r.text
    assert {r.json()["purposes"][p]["reason"] for p in ("sale", "share")} == {"explicit_grant"}

    birth = born_years_ago(10.5)
    r = await client.put(
        "/v1/subjects/cc", json={"jurisdiction": "US-CA", "birth_date": birth}, headers=admin()
    )
    assert r.status_code == 200, r.text
    assert r.json()["age_status"] == "child"
    assert r.json()["purposes"]["sale"]["status"] == "granted"
    assert r.json()["purposes"]["sale"]["reason"] == "minor_without_guardian"
    r = await client.post(
        "/v1/subjects/cc/guardians",
        json={"guardian_id": "gran", "verification": verification("video_call")},
        headers=admin(),
    )
    assert r.status_code == 201, r.text
    r = await client.post(
        "/v1/decisions:batch",
        headers=admin(),
        json={"items": [{"subject_id": "cc", "purpose": p} for p in ("sale", "share")]},
    )
    assert [(i["allowed"], i["reason"]) for i in r.json()["items"]] == [
        (False, "child_data_never_sold")
    ] * 2

    # discovery: only an operator may say so, and it starts the erasure flow
    url = "/v1/admin/subjects/cc/collected-without-consent"
    r = await client.post(url, json={"note": "found in support ticket"}, headers=user("gran"))
    await expect_problem(r, 403)
    r = await client.post(url, json={}, headers=await make_key(db, ["preferences:write"]))
    await expect_problem(r, 403)
    r = await client.post(url, json={"note": "found in support ticket"}, headers=admin())
    assert r.status_code == 202, r.text
    accepted = r.json()
    assert accepted["reason"] == "collected_without_guardian_consent"
    r = await client.get("/v1/subjects/cc/erasure", headers=admin())
    assert r.status_code == 200, r.text
    assert r.json()["request_id"] == accepted["request_id"]
    assert r.json()["reason"] == "collected_without_guardian_consent"
    r = await client.get(PREFS.format("cc"), headers=admin())
    assert {p["reason"] for p in r.json()["purposes"].values()} == {"erased"}
    assert await db.fetchval("SELECT birth_date FROM subjects WHERE subject_id = 'cc'") is None
    erasures = [e for e in await outbox(db, "cc") if e[0] == "subject.erasure_requested"]
    assert len(erasures) == 1
    assert erasures[0][2]["request_id"] == accepted["request_id"]
    await assert_no_birth_date_anywhere(db, birth)


async def test_a_guardian_token_does_not_act_for_a_linked_subject_who_is_no_minor(client, db):
    """API.md: a guardian's token may act for *minors* linked to that guardian; for anyone
    else it is a token for another subject (403), and a rejected request changes nothing."""
    birth = born_years_ago(30.5)
    r = await client.put(
        "/v1/subjects/grown", headers=admin(), json={"jurisdiction": "DE", "birth_date": birth}
    )
    assert r.json()["age_status"] == "adult"
    r = await client.post(
        "/v1/subjects/grown/guardians",
        json={"guardian_id": "former", "verification": verification()},
        headers=admin(),
    )
    assert r.status_code in (201, 409), r.text  # linking an adult may itself be refused
    before = await outbox(db, "grown")
    as_former = user("former")
    r = await client.get(PREFS.format("grown"), headers=as_former)
    await expect_problem(r, 403)
    r = await patch(client, "grown", as_former, analytics="denied")
    await expect_problem(r, 403)
    r = await client.put(
        "/v1/subjects/grown",
        headers=as_former,
        json={"jurisdiction": "DE", "birth_date": born_years_ago(10.5)},
    )
    await expect_problem(r, 403)
    r = await client.post("/v1/subjects/grown/erasure", headers=as_former)
    await expect_problem(r, 403)
    assert await outbox(db, "grown") == before
