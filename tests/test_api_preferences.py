"""Preference behaviour (API.md § Preferences): defaults, no-ops, If-Match, idempotency,
GPC, regime defaults, re-consent after a material policy, expiry."""

from __future__ import annotations

import asyncio
import json
import re
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg

from consent.adapters.db import make_engine, make_sessionmaker
from consent.service.expiry import expire_due
from tests.conftest import admin, eventually, user

CATALOG = {"marketing_email", "marketing_sms", "marketing_push", "third_party_sharing", "sale"}
CATALOG |= {"share", "analytics", "personalization", "cookies_functional", "cookies_analytics"}
CATALOG |= {"cookies_advertising"}


def prefs(sid: str) -> str:
    return f"/v1/subjects/{sid}/preferences"


async def rows(db: asyncpg.Connection, table: str, sid: str) -> int:
    col = "aggregateid" if table == "outbox" else "subject_id"
    return await db.fetchval(f"SELECT count(*) FROM {table} WHERE {col} = $1", sid)


async def patch(client: Any, sid: str, purposes: dict[str, str], **headers: str) -> Any:
    r = await client.patch(
        prefs(sid), json={"purposes": purposes}, headers={**user(sid), **headers}
    )
    assert r.status_code == 200, r.text
    return r


async def test_never_written_subject_reads_as_defaults(client, db):
    r = await client.get(prefs("ghost"), headers=user("ghost"))
    assert r.status_code == 200, r.text
    assert r.headers["etag"] == '"0"'
    body = r.json()
    assert body["subject_id"] == "ghost" and body["sequence"] == 0
    assert body["jurisdiction"] is None and body["gpc_honored"] is False
    assert set(body["purposes"]) >= CATALOG
    for p in body["purposes"].values():
        assert p["status"] == "unset" and p["reason"] == "regime_default"
        assert p["source"] is None and p["needs_reconsent"] is False
    assert await rows(db, "subjects", "ghost") == 0  # reading creates nothing
    assert await rows(db, "consent_ledger", "ghost") == 0


async def test_patch_that_changes_nothing_is_a_noop(client, db):
    first = await patch(client, "nina", {"marketing_email": "granted", "analytics": "denied"})
    assert first.json()["sequence"] == 1
    ledger, outbox = await rows(db, "consent_ledger", "nina"), await rows(db, "outbox", "nina")
    again = await patch(client, "nina", {"marketing_email": "granted"})
    assert again.json()["sequence"] == 1 and again.headers["etag"] == '"1"'
    assert again.json()["purposes"] == first.json()["purposes"]
    assert (await rows(db, "consent_ledger", "nina"), await rows(db, "outbox", "nina")) == (
        ledger,
        outbox,
    )


async def test_if_match_with_current_etag_succeeds(client):
    etag = (await client.get(prefs("ivy"), headers=user("ivy"))).headers["etag"]
    r = await patch(client, "ivy", {"sale": "denied"}, **{"If-Match": etag})
    assert r.headers["etag"] == '"1"'
    r = await patch(client, "ivy", {"sale": "granted"}, **{"If-Match": r.headers["etag"]})
    assert r.json()["sequence"] == 2
    r = await client.patch(
        prefs("ivy"),
        json={"purposes": {"sale": "denied"}},
        headers={**user("ivy"), "If-Match": '"1"'},
    )
    assert r.status_code == 412 and r.headers["etag"] == '"2"'


IDEMPOTENCY_BUG = (
    "PATCH with any Idempotency-Key → 500: IdempotencyRepository.lock passes "
    "f'{principal}\\x00{key}' to PostgreSQL, which rejects NUL in text "
    "(CharacterNotInRepertoireError); API.md: Idempotency-Key is honoured, no input reaches 5xx"
)


async def test_idempotency_key_replays_the_first_response(client, db):
    h = {"Idempotency-Key": "k-1"}
    one = await patch(client, "ida", {"marketing_email": "granted"}, **h)
    two = await patch(client, "ida", {"marketing_email": "granted"}, **h)
    assert two.content == one.content
    assert two.headers["etag"] == one.headers["etag"] == '"1"'
    assert two.headers.get("idempotent-replayed") == "true"
    assert "idempotent-replayed" not in one.headers
    assert await rows(db, "consent_ledger", "ida") == 1
    assert await rows(db, "outbox", "ida") == 1


async def test_idempotency_key_reused_with_another_body_is_422(client, db):
    h = {"Idempotency-Key": "k-2"}
    await patch(client, "ida", {"marketing_email": "granted"}, **h)
    r = await client.patch(
        prefs("ida"), json={"purposes": {"marketing_email": "denied"}}, headers={**user("ida"), **h}
    )
    assert r.status_code == 422, r.text
    assert r.headers["content-type"].startswith("application/problem+json")
    assert {"type", "title", "status", "detail"} <= set(r.json())
    assert await rows(db, "consent_ledger", "ida") == 1
    assert await rows(db, "outbox", "ida") == 1


async def test_gpc_on_own_get_records_opt_out_once(client, db):
    r = await client.get(prefs("gail"), headers={**user("gail"), "Sec-GPC": "1"})
    assert r.status_code == 200, r.text
    assert r.headers.get("sec-gpc-honored") == "1"
    body = r.json()
    assert body["sequence"] == 1 and body["gpc_honored"] is True
    for purpose in ("sale", "share"):
        p = body["purposes"][purpose]
        assert (p["status"], p["allowed"], p["source"], p["reason"]) == (
            "denied",
            False,
            "gpc",
            "gpc_opt_out",
        )
    entry = await db.fetchrow(
        "SELECT type, channel, changes FROM consent_ledger WHERE subject_id='gail'"
    )
    assert entry["type"] == "consent.changed" and entry["channel"] == "gpc"
    assert sorted((c["purpose"], c["to"]) for c in json.loads(entry["changes"])) == [
        ("sale", "denied"),
        ("share", "denied"),
    ]
    assert await rows(db, "outbox", "gail") == 1
    again = await client.get(prefs("gail"), headers={**user("gail"), "Sec-GPC": "1"})
    assert again.json()["sequence"] == 1 and again.headers.get("sec-gpc-honored") == "1"
    assert await rows(db, "consent_ledger", "gail") == 1
    assert await rows(db, "outbox", "gail") == 1


async def test_gpc_zero_or_from_an_api_key_records_nothing(client, db):
    r = await client.get(prefs("zed"), headers={**user("zed"), "Sec-GPC": "0"})
    assert r.json()["sequence"] == 0 and "sec-gpc-honored" not in r.headers
    r = await client.get(prefs("zed"), headers={**admin(), "Sec-GPC": "1"})
    assert r.json()["sequence"] == 0 and "sec-gpc-honored" not in r.headers
    assert r.json()["purposes"]["sale"]["reason"] == "regime_default"
    r = await client.patch(
        prefs("zed"),
        json={"purposes": {"analytics": "granted"}},
        headers={**admin(), "Sec-GPC": "1"},
    )
    assert r.json()["sequence"] == 1 and r.json()["purposes"]["sale"]["status"] == "unset"
    assert await rows(db, "consent_ledger", "zed") == 1
    assert await db.fetchval("SELECT count(*) FROM consent_ledger WHERE channel='gpc'") == 0


async def test_explicit_grant_after_gpc_sticks(client, db):
    gpc = {"Sec-GPC": "1"}
    await client.put("/v1/subjects/gus", json={"jurisdiction": "US-CA"}, headers=admin())
    r = await client.get(prefs("gus"), headers={**user("gus"), **gpc})
    assert r.json()["purposes"]["sale"]["reason"] == "gpc_opt_out"
    seq = r.json()["sequence"]
    r = await patch(client, "gus", {"sale": "granted"}, **gpc)
    sale = r.json()["purposes"]["sale"]
    assert (sale["status"], sale["allowed"], sale["reason"]) == ("granted", True, "explicit_grant")
    assert r.json()["sequence"] == seq + 1
    for _ in range(2):
        r = await client.get(prefs("gus"), headers={**user("gus"), **gpc})
        assert r.json()["sequence"] == seq + 1
        assert r.json()["purposes"]["sale"]["allowed"] is True
        assert r.json()["purposes"]["share"]["reason"] == "gpc_opt_out"
    r = await patch(client, "gus", {"analytics": "granted"}, **gpc)
    assert r.json()["purposes"]["sale"]["reason"] == "explicit_grant"
    assert r.json()["sequence"] == seq + 2


async def test_well_known_gpc(client):
    r = await client.get("/.well-known/gpc.json")
    assert r.status_code == 200 and r.headers["content-type"].startswith("application/json")
    body = r.json()
    assert set(body) == {"gpc", "lastUpdate"} and body["gpc"] is True
    assert re.fullmatch(r"\d{4}-\d{2}-\d{2}", body["lastUpdate"])
    datetime.strptime(body["lastUpdate"], "%Y-%m-%d")


async def test_regime_defaults_us_ca_and_de(client):
    await client.put("/v1/subjects/cal", json={"jurisdiction": "US-CA"}, headers=admin())
    await client.put("/v1/subjects/dora", json={"jurisdiction": "DE"}, headers=admin())
    cal = (await client.get(prefs("cal"), headers=user("cal"))).json()["purposes"]
    assert (cal["sale"]["allowed"], cal["sale"]["reason"]) == (True, "regime_default")
    assert (cal["marketing_sms"]["allowed"], cal["marketing_sms"]["reason"]) == (
        False,
        "regime_default",
    )
    dora = (await client.get(prefs("dora"), headers=user("dora"))).json()["purposes"]
    assert {k for k, v in dora.items() if v["allowed"]} == set()
    assert {v["reason"] for v in dora.values()} == {"regime_default"}


async def publish(client: Any, version: str, *, material: bool, purposes: list[str]) -> None:
    body = {
        "version": version,
        "effective_at": datetime.now(UTC).isoformat(),
        "material": material,
        "affected_purposes": purposes,
    }
    r = await client.post("/v1/policies", json=body, headers=admin())
    assert r.status_code == 201, r.text


async def test_material_policy_requires_reconsent(client, db):
    await client.put("/v1/subjects/rita", json={"jurisdiction": "DE"}, headers=admin())
    await patch(
        client,
        "rita",
        {"analytics": "granted", "personalization": "denied", "marketing_email": "granted"},
    )
    await asyncio.sleep(0.05)
    await publish(client, "2026-material", material=True, purposes=["analytics", "personalization"])

    async def announced() -> bool:  # the publish wakes the scheduler: one entry, at once
        return bool(
            await db.fetchval(
                "SELECT count(*) FROM consent_ledger WHERE subject_id = 'rita' "
                "AND type = 'consent.reconsent_required'"
            )
        )

    await eventually(announced, timeout=15)  # then no entry lands between read and write
    body = (await client.get(prefs("rita"), headers=user("rita"))).json()
    seq = body["sequence"]
    a = body["purposes"]["analytics"]
    assert (a["allowed"], a["reason"], a["needs_reconsent"]) == (False, "needs_reconsent", True)
    p = body["purposes"]["personalization"]
    assert (p["allowed"], p["reason"], p["needs_reconsent"]) == (False, "explicit_denial", False)
    m = body["purposes"]["marketing_email"]
    assert (m["allowed"], m["reason"], m["needs_reconsent"]) == (True, "explicit_grant", False)
    r = await client.get("/v1/subjects/rita/decisions?purpose=analytics", headers=user("rita"))
    assert r.json()["reason"] == "needs_reconsent" and r.json()["allowed"] is False
    again = (await patch(client, "rita", {"analytics": "granted"})).json()
    assert again["sequence"] == seq + 1
    a = again["purposes"]["analytics"]
    assert (a["allowed"], a["reason"], a["needs_reconsent"]) == (True, "explicit_grant", False)
    assert a["policy_version"] == "2026-material"


async def test_non_material_policy_changes_nothing(client):
    await client.put("/v1/subjects/nora", json={"jurisdiction": "DE"}, headers=admin())
    before = (await patch(client, "nora", {"analytics": "granted"})).json()
    await asyncio.sleep(0.05)
    await publish(client, "2026-minor", material=False, purposes=["analytics"])
    after = (await client.get(prefs("nora"), headers=user("nora"))).json()
    assert after == before
    assert after["purposes"]["analytics"]["reason"] == "explicit_grant"


async def test_grant_expires_after_validity_period(client, db, settings):
    await client.put("/v1/subjects/exa", json={"jurisdiction": "DE"}, headers=admin())
    r = await patch(client, "exa", {"third_party_sharing": "granted", "analytics": "granted"})
    tps = r.json()["purposes"]["third_party_sharing"]
    assert tps["expires_at"] is not None
    seq = r.json()["sequence"]
    ledger = await rows(db, "consent_ledger", "exa")
    engine = make_engine(settings.database_url, 2)
    try:
        later = datetime.now(UTC) + timedelta(days=366)
        assert await expire_due(make_sessionmaker(engine), later) == 1
        assert await expire_due(make_sessionmaker(engine), later) == 0
    finally:
        await engine.dispose()
    assert await rows(db, "consent_ledger", "exa") == ledger + 1
    entry = await db.fetchrow(
        "SELECT type, sequence FROM consent_ledger WHERE subject_id='exa' ORDER BY sequence DESC"
    )
    assert (entry["type"], entry["sequence"]) == ("consent.expired", seq + 1)
    out = await db.fetch("SELECT sequence FROM outbox WHERE type='consent.expired'")
    assert [o["sequence"] for o in out] == [seq + 1]
    r = await client.get(
        "/v1/subjects/exa/decisions?purpose=third_party_sharing", headers=user("exa")
    )
    assert r.json() == {
        "subject_id": "exa",
        "purpose": "third_party_sharing",
        "allowed": False,
        "reason": "expired",
        "sequence": seq + 1,  # the view saw the scheduler's commit
    }
    body = (await client.get(prefs("exa"), headers=user("exa"))).json()
    assert body["sequence"] == seq + 1
    assert body["purposes"]["analytics"]["reason"] == "explicit_grant"  # no validity period


async def test_concurrent_expiry_records_one_lapse_per_subject(client, db, settings):
    subjects = [f"exp-{i}" for i in range(8)]
    for sid in subjects:
        await patch(client, sid, {"third_party_sharing": "granted"})
    engines = [make_engine(settings.database_url, 3) for _ in range(2)]
    later = datetime.now(UTC) + timedelta(days=366)
    try:
        done = await asyncio.gather(*(expire_due(make_sessionmaker(e), later) for e in engines))
    finally:
        for e in engines:
            await e.dispose()
    assert sum(done) == len(subjects)
    per_subject = await db.fetch(
        "SELECT subject_id, count(*) AS n FROM consent_ledger WHERE type='consent.expired' "
        "GROUP BY subject_id"
    )
    assert {r["subject_id"]: r["n"] for r in per_subject} == dict.fromkeys(subjects, 1)
    outbox = await db.fetch(
        "SELECT aggregateid, count(*) AS n FROM outbox WHERE type='consent.expired' "
        "GROUP BY aggregateid"
    )
    assert {r["aggregateid"]: r["n"] for r in outbox} == dict.fromkeys(subjects, 1)
