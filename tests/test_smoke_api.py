"""Quick tour of the API surface; detailed behaviour lives in the per-feature tests."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from consentctl.ledger import verify_all
from tests.conftest import admin, user


async def test_tour(client, settings, db):
    r = await client.get("/v1/purposes")
    assert r.status_code == 200 and len(r.json()["items"]) >= 11
    r = await client.put("/v1/subjects/s1", json={"jurisdiction": "de"}, headers=admin())
    assert r.status_code == 200, r.text
    assert r.json()["jurisdiction"] == "DE"
    r = await client.patch(
        "/v1/subjects/s1/preferences",
        headers=user("s1"),
        json={"purposes": {"analytics": "granted", "sale": "denied"}},
    )
    assert r.status_code == 200, r.text
    assert r.json()["purposes"]["analytics"]["reason"] == "explicit_grant"
    r = await client.get("/v1/subjects/s1/history?limit=1", headers=user("s1"))
    assert r.status_code == 200, r.text
    page = r.json()
    assert page["items"][0]["sequence"] == 2 and page["next_cursor"]
    r = await client.get(
        f"/v1/subjects/s1/history?limit=1&cursor={page['next_cursor']}", headers=user("s1")
    )
    assert r.json()["items"][0]["sequence"] == 1 and r.json()["next_cursor"] is None
    r = await client.get("/v1/subjects/s1/export", headers=user("s1"))
    assert r.status_code == 200 and len(r.json()["history"]) == 2
    eff = (datetime.now(UTC) + timedelta(seconds=1)).isoformat()
    r = await client.post(
        "/v1/policies",
        headers=admin(),
        json={
            "version": "2026-12",
            "effective_at": eff,
            "material": True,
            "affected_purposes": ["analytics"],
        },
    )
    assert r.status_code == 201, r.text
    r = await client.post(
        "/v1/decisions:batch",
        headers=admin(),
        json={
            "items": [
                {"subject_id": "s1", "purpose": "analytics"},
                {"subject_id": "nobody", "purpose": "sale"},
            ]
        },
    )
    assert r.status_code == 200, r.text
    assert [i["reason"] for i in r.json()["items"]] == ["explicit_grant", "regime_default"]
    checked, problems = await verify_all(settings.database_url, show_progress=False)
    assert checked == 1 and problems == []
    await db.execute("SET session_replication_role = replica")  # bypass append-only trigger
    await db.execute(
        "UPDATE consent_ledger SET channel = 'api' WHERE subject_id='s1' AND sequence=2"
    )
    checked, problems = await verify_all(settings.database_url, show_progress=False)
    # the entry's hash, and the projection that no longer matches what the entry now says
    assert {(p.subject_id, p.sequence) for p in problems} == {("s1", 2)}
    assert "hash" in {p.field for p in problems}
