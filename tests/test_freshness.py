"""API.md "Freshness": Consent-Token on writes, min_sequence / consistency=full on decision
reads, and the per-worker view of decision inputs that must never answer older than the
caller allows.

Two API replicas share the database: each its own app, view and change feed (LISTEN on its
own connection). The writer answers with a token; the reader, holding the previous state in
its view, is given the token and must never answer from older state. The rounds are
``CONSENT_FRESHNESS_ROUNDS`` (default 60; the long profile runs 10,000).
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from datetime import UTC, date, datetime, timedelta
from typing import Any

import asyncpg
import httpx
import pytest
from fastapi import FastAPI
from prometheus_client import REGISTRY

from consent.api.app import create_app
from consent.api.auth import hash_key, new_key
from consent.settings import Settings
from tests.conftest import admin, eventually, user

PURPOSE = "marketing_email"
ROUNDS = int(os.environ.get("CONSENT_FRESHNESS_ROUNDS", "60"))


def metric(name: str) -> float:
    return REGISTRY.get_sample_value(name) or 0.0


class Replica:
    def __init__(self, app: FastAPI, client: httpx.AsyncClient) -> None:
        self.app, self.client = app, client

    @property
    def view(self) -> Any:
        return self.app.state.view

    async def decision(self, sid: str, purpose: str, **params: Any) -> httpx.Response:
        q = {"purpose": purpose, **params}
        return await self.client.get(f"/v1/subjects/{sid}/decisions", params=q, headers=admin())


@pytest.fixture
async def replicas(settings: Settings) -> AsyncIterator[tuple[Replica, Replica]]:
    out = []
    apps = [create_app(settings), create_app(settings)]
    contexts = [a.router.lifespan_context(a) for a in apps]
    for ctx in contexts:
        await ctx.__aenter__()
    try:
        for a in apps:
            assert a.state.change_feed.connected.is_set()
            out.append(
                Replica(
                    a,
                    httpx.AsyncClient(transport=httpx.ASGITransport(app=a), base_url="http://api"),
                )
            )
        yield out[0], out[1]
    finally:
        for r in out:
            await r.client.aclose()
        for ctx in reversed(contexts):
            await ctx.__aexit__(None, None, None)


async def patch(r: Replica, sid: str, **purposes: str) -> httpx.Response:
    resp = await r.client.patch(
        f"/v1/subjects/{sid}/preferences", json={"purposes": purposes}, headers=admin()
    )
    assert resp.status_code == 200, resp.text
    return resp


@pytest.mark.timeout(120 + ROUNDS * 0.2)  # the long profile: 10,000 rounds
async def test_reader_given_the_writers_token_never_answers_older(replicas):
    writer, reader = replicas
    sid = "fresh-rounds"
    await writer.client.put(f"/v1/subjects/{sid}", json={"jurisdiction": "DE"}, headers=admin())
    hits = metric("consent_view_hits_total")
    older = 0
    for i in range(ROUNDS):
        # the reader holds the previous state in its view
        assert (await reader.decision(sid, "marketing_email")).status_code == 200
        status = "granted" if i % 2 == 0 else "denied"
        w = await patch(writer, sid, marketing_email=status)
        token = int(w.headers["Consent-Token"])
        assert token == w.json()["sequence"]
        single = await reader.decision(sid, "marketing_email", min_sequence=token)
        batch = await reader.client.post(
            "/v1/decisions:batch",
            json={
                "items": [{"subject_id": sid, "purpose": "marketing_email", "min_sequence": token}]
            },
            headers=admin(),
        )
        for doc in (single.json(), batch.json()["items"][0]):
            older += doc["sequence"] < token or doc["allowed"] != (status == "granted")
    assert older == 0
    # the view was used (a reader that always read the database would pass trivially)
    assert metric("consent_view_hits_total") - hits >= ROUNDS


async def test_a_token_the_database_has_not_reached_is_409(replicas, db):
    writer, reader = replicas
    w = await patch(writer, "fresh-ahead", analytics="granted")
    ahead = int(w.headers["Consent-Token"]) + 1
    before = await db.fetchval("SELECT count(*) FROM consent_ledger")
    for full in ({}, {"consistency": "full"}):
        r = await reader.decision("fresh-ahead", "analytics", min_sequence=ahead, **full)
        assert r.status_code == 409 and r.json()["code"] == "sequence_not_reached", r.text
        assert r.headers["content-type"].startswith("application/problem+json")
        r = await reader.client.post(
            "/v1/decisions:batch",
            params=full,
            json={
                "items": [
                    {"subject_id": "other", "purpose": "analytics"},
                    {"subject_id": "fresh-ahead", "purpose": "analytics", "min_sequence": ahead},
                ]
            },
            headers=admin(),
        )
        assert r.status_code == 409 and r.json()["code"] == "sequence_not_reached", r.text
    assert await db.fetchval("SELECT count(*) FROM consent_ledger") == before
    # never written: sequence 0, and a token of 1 is not reached
    r = await reader.decision("fresh-never", "analytics")
    assert r.json()["sequence"] == 0
    assert (await reader.decision("fresh-never", "analytics", min_sequence=1)).status_code == 409


async def test_commits_from_another_replica_invalidate_the_view(replicas, db):
    writer, reader = replicas
    sid = "fresh-notify"
    await patch(writer, sid, marketing_sms="granted")
    r = await reader.decision(sid, "marketing_sms")
    assert r.json()["allowed"] is True
    assert reader.view.get(sid) is not None  # cached
    applied = reader.view.applied
    w = await patch(writer, sid, marketing_sms="denied")
    await eventually(lambda: reader.view.applied > applied)
    r = await reader.decision(sid, "marketing_sms")  # no token: the notification did it
    assert r.json()["allowed"] is False and r.json()["sequence"] == w.json()["sequence"]
    # a write outside any API (an operator's SQL, another service) notifies too
    applied = reader.view.applied
    await db.execute("UPDATE subjects SET jurisdiction = 'US-CA' WHERE subject_id = $1", sid)
    await eventually(lambda: reader.view.applied > applied)
    assert reader.view.get(sid) is None or reader.view.get(sid).jurisdiction == "US-CA"
    # consistency=full reads the database whatever the view holds
    rt = metric("consent_view_read_throughs_total")
    r = await reader.decision(sid, "marketing_sms", consistency="full")
    assert r.status_code == 200 and metric("consent_view_read_throughs_total") == rt + 1


async def test_a_lost_change_feed_clears_the_view_and_reconnects(replicas, db):
    writer, reader = replicas
    await patch(writer, "fresh-lost", analytics="granted")
    await reader.decision("fresh-lost", "analytics")
    assert len(reader.view) > 0
    feed = reader.app.state.change_feed
    feed.retry_s = 0.05
    cleared = reader.view.generation
    await db.execute("SELECT pg_terminate_backend($1)", feed.server_pid)
    await eventually(lambda: reader.view.generation > cleared and len(reader.view) == 0)
    # meanwhile (and after), answers are right: the view starts again from empty
    w = await patch(writer, "fresh-lost", analytics="denied")
    r = await reader.decision("fresh-lost", "analytics")
    assert r.json()["allowed"] is False and r.json()["sequence"] == w.json()["sequence"]
    await eventually(lambda: reader.view.live)


async def test_an_expiry_passing_while_cached_is_answered(replicas, monkeypatch):
    writer, reader = replicas
    sid = "fresh-expiry"
    await patch(writer, sid, third_party_sharing="granted")  # has a validity period
    r = await reader.decision(sid, "third_party_sharing")
    assert r.json()["allowed"] is True and reader.view.get(sid) is not None
    later = datetime.now(UTC) + timedelta(days=3650)
    monkeypatch.setattr("consent.api.fast_decisions.utcnow", lambda: later)
    hits = metric("consent_view_hits_total")
    r = await reader.decision(sid, "third_party_sharing")
    assert r.json()["allowed"] is False and r.json()["reason"] == "expired"
    assert metric("consent_view_hits_total") == hits + 1  # from the view, recomputed with now


async def test_a_birthday_while_cached_changes_the_answer(replicas, monkeypatch):
    writer, reader = replicas
    sid = "fresh-birthday"
    today = datetime.now(UTC).date()
    born = date(today.year - 16, today.month, today.day) + timedelta(days=2)  # 15 for 2 days
    r = await writer.client.put(
        f"/v1/subjects/{sid}",
        json={"jurisdiction": "US-CA", "birth_date": born.isoformat()},
        headers=admin(),
    )
    assert r.status_code == 200, r.text
    before = (await reader.decision(sid, "sale")).json()
    assert reader.view.get(sid) is not None
    later = datetime.now(UTC) + timedelta(days=3)
    monkeypatch.setattr("consent.api.fast_decisions.utcnow", lambda: later)
    after = (await reader.decision(sid, "sale")).json()
    assert (before["allowed"], after["allowed"]) == (False, True), (before, after)
    assert after["sequence"] == before["sequence"]  # nothing was written: time did it


async def test_a_revoked_key_stops_once_the_notification_arrives(replicas, db):
    writer, reader = replicas
    key_id, raw = new_key()
    await db.execute(
        "INSERT INTO api_keys (id, key_hash, name, scopes) VALUES ($1, $2, 'fresh', $3)",
        key_id,
        hash_key(raw),
        ["decisions:read"],
    )
    h = {"X-API-Key": raw}
    url = "/v1/subjects/fresh-key/decisions?purpose=analytics"
    for _ in range(2):  # the second is answered with the cached key
        assert (await reader.client.get(url, headers=h)).status_code == 200
    assert reader.app.state.keys.get(raw) is not None
    generation = reader.app.state.keys.generation
    await db.execute("UPDATE api_keys SET revoked_at = now() WHERE id = $1", key_id)
    # the bound: this worker applies the revocation's notification (milliseconds; the wait
    # below is only a test's patience), and then not one more request passes
    await eventually(lambda: reader.app.state.keys.generation > generation)
    assert (await reader.client.get(url, headers=h)).status_code == 401
    assert (await writer.client.get(url, headers=h)).status_code == 401


async def test_a_policy_published_on_another_replica_reaches_the_readers_decisions(replicas):
    writer, reader = replicas
    sid = "fresh-policy"
    await patch(writer, sid, personalization="granted")
    assert (await reader.decision(sid, "personalization")).json()["allowed"] is True
    r = await writer.client.post(
        "/v1/policies",
        json={
            "version": "fresh-material",
            "effective_at": datetime.now(UTC).isoformat(),  # after the grant, in force now
            "material": True,
            "affected_purposes": ["personalization"],
        },
        headers=admin(),
    )
    assert r.status_code == 201, r.text

    async def reconsent() -> bool:
        return (await reader.decision(sid, "personalization")).json()["reason"] == "needs_reconsent"

    await eventually(reconsent)  # the reader's policy cache is dropped by the notification


async def test_every_write_answers_with_its_consent_token(client, db: asyncpg.Connection):
    sid = "fresh-token"
    r = await client.put(f"/v1/subjects/{sid}", json={"jurisdiction": "DE"}, headers=admin())
    assert r.headers["Consent-Token"] == "1"
    r = await client.patch(
        f"/v1/subjects/{sid}/preferences",
        json={"purposes": {"analytics": "granted"}},
        headers=admin(),
    )
    assert r.headers["Consent-Token"] == "2" == r.headers["ETag"].strip('"')
    r = await client.patch(  # a no-op: the sequence it answers at
        f"/v1/subjects/{sid}/preferences",
        json={"purposes": {"analytics": "granted"}},
        headers=admin(),
    )
    assert r.headers["Consent-Token"] == "2"
    r = await client.get(  # a GPC signal on a read is a write
        f"/v1/subjects/{sid}/decisions?purpose=sale", headers={**user(sid), "Sec-GPC": "1"}
    )
    assert r.headers["Consent-Token"] == "3"
    assert r.json() == {**r.json(), "allowed": False, "reason": "gpc_opt_out", "sequence": 3}
    r = await client.post(f"/v1/subjects/{sid}/erasure", headers=user(sid))
    assert r.status_code == 202, r.text
    seq = await db.fetchval("SELECT sequence FROM subjects WHERE subject_id = $1", sid)
    assert r.headers["Consent-Token"] == str(seq)
    assert (
        "Consent-Token"
        not in (await client.get(f"/v1/subjects/{sid}/preferences", headers=admin())).headers
    )


async def test_the_writers_own_view_holds_exactly_what_it_committed(replicas):
    writer, _ = replicas
    sid = "fresh-through"
    await writer.client.put(f"/v1/subjects/{sid}", json={"jurisdiction": "US-CA"}, headers=admin())
    w = await patch(writer, sid, marketing_email="granted", sale="denied", analytics="granted")
    token = int(w.headers["Consent-Token"])
    held = writer.view.get(sid)
    assert held is not None and held.sequence == token  # written through, no read needed
    hits = metric("consent_view_hits_total")
    purposes = (await writer.client.get("/v1/purposes")).json()["items"]
    for p in (x["key"] for x in purposes):
        cached = (await writer.decision(sid, p, min_sequence=token)).json()
        fresh = (await writer.decision(sid, p, consistency="full")).json()
        assert cached == fresh, p
    assert metric("consent_view_hits_total") - hits == len(purposes)
