"""Regressions found in review: each once produced a wrong answer or a 5xx."""

from __future__ import annotations

import base64
from datetime import UTC, date, datetime, timedelta

import pytest

from consent.adapters.db import make_engine, make_sessionmaker
from consent.service.expiry import expire_due
from tests.conftest import admin


async def test_put_without_birth_date_keeps_the_known_one(client, db):
    kid = (date.today() - timedelta(days=365 * 12)).isoformat()
    r = await client.put(
        "/v1/subjects/k", headers=admin(), json={"jurisdiction": "DE", "birth_date": kid}
    )
    assert r.json()["age_status"] == "child"
    r = await client.put("/v1/subjects/k", headers=admin(), json={"jurisdiction": "FR"})
    assert r.status_code == 200 and r.json()["age_status"] == "child"
    assert await db.fetchval("SELECT birth_date FROM subjects WHERE subject_id='k'") is not None
    r = await client.put(
        "/v1/subjects/k", headers=admin(), json={"jurisdiction": "FR", "birth_date": None}
    )  # explicit null clears
    assert r.json()["age_status"] == "unknown"


@pytest.mark.parametrize(
    "path,body",
    [
        ("/v1/policies", {"version": "x1", "effective_at": "9999-12-31T23:00:00-05:00"}),
        ("/v1/policies", {"version": "x2", "effective_at": "0001-01-01T00:00:00+14:00"}),
        ("/v1/admin/replays", {"since": "0001-01-01T00:00:00+14:00"}),
        (
            "/v1/admin/replays",
            {"since": "2026-01-01T00:00:00Z", "until": "9999-12-31T23:59:59-10:00"},
        ),
    ],
)
async def test_extreme_times_are_422_not_500(client, path, body):
    r = await client.post(path, headers=admin(), json=body)
    assert r.status_code == 422, r.text


async def test_huge_history_cursor_is_422(client):
    cursor = base64.urlsafe_b64encode(b"seq:99999999999999999999").decode().rstrip("=")
    r = await client.get(f"/v1/subjects/u/history?cursor={cursor}", headers=admin())
    assert r.status_code == 422


async def test_guardian_revocation_after_erasure_is_refused(client):
    kid = (date.today() - timedelta(days=365 * 10)).isoformat()
    await client.put(
        "/v1/subjects/e", headers=admin(), json={"jurisdiction": "DE", "birth_date": kid}
    )
    r = await client.post(
        "/v1/subjects/e/guardians",
        headers=admin(),
        json={
            "guardian_id": "g",
            "verification": {
                "method": "signed_form",
                "reference": "f-1",
                "verified_at": datetime.now(UTC).isoformat(),
            },
        },
    )
    assert r.status_code == 201, r.text
    assert (await client.post("/v1/subjects/e/erasure", headers=admin())).status_code == 202
    r = await client.delete("/v1/subjects/e/guardians/g", headers=admin())
    assert r.status_code == 409 and r.json()["code"] == "subject_erased"


async def test_erased_subjects_do_not_stall_expiry_for_others(client, settings, db):
    for sid in ("a1", "a2", "a3", "live"):
        r = await client.patch(
            f"/v1/subjects/{sid}/preferences",
            headers=admin(),
            json={"purposes": {"third_party_sharing": "granted"}},
        )
        assert r.status_code == 200
    for sid in ("a1", "a2", "a3"):
        assert (
            await client.post(f"/v1/subjects/{sid}/erasure", headers=admin())
        ).status_code == 202
    engine = make_engine(settings.database_url or "")
    try:
        n = await expire_due(
            make_sessionmaker(engine), datetime.now(UTC) + timedelta(days=400), batch=2
        )
    finally:
        await engine.dispose()
    assert n == 1
    assert (
        await db.fetchval(
            "SELECT count(*) FROM consent_ledger WHERE type='consent.expired' AND subject_id='live'"
        )
        == 1
    )


async def test_gpc_is_honoured_on_every_subject_route(client, db):
    from tests.conftest import user

    await client.put("/v1/subjects/g1", headers=admin(), json={"jurisdiction": "US-CA"})
    gpc = {**user("g1"), "Sec-GPC": "1"}
    r = await client.get("/v1/subjects/g1/decisions?purpose=sale", headers=gpc)
    assert r.json() == {
        "subject_id": "g1",
        "purpose": "sale",
        "allowed": False,
        "reason": "gpc_opt_out",
        "sequence": 2,  # computed after the opt-out this very request recorded
    }
    assert r.headers["sec-gpc-honored"] == "1"
    for path in (
        "/v1/subjects/g1/history",
        "/v1/subjects/g1/export",
        "/v1/subjects/g1/propagation",
    ):
        r = await client.get(path, headers=gpc)
        assert r.status_code == 200 and r.headers["sec-gpc-honored"] == "1", path
    assert (
        await db.fetchval(
            "SELECT count(*) FROM consent_ledger WHERE subject_id='g1' AND channel='gpc'"
        )
        == 1
    )
    r = await client.get("/v1/subjects/g1/history", headers={**admin(), "Sec-GPC": "1"})
    assert "sec-gpc-honored" not in r.headers  # only the subject's own requests carry it
