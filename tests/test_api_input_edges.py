"""Input edge cases beyond the schema basics: header limits, policy bodies, history paging,
NUL characters and time zones. Each rejected request changes nothing."""

from __future__ import annotations

import asyncpg
import pytest

from tests.conftest import admin, user
from tests.support import assert_problem, counts

SID = "eve"
PREFS = f"/v1/subjects/{SID}/preferences"


@pytest.fixture
async def seeded(client, db) -> dict[str, int]:
    r = await client.patch(PREFS, json={"purposes": {"analytics": "denied"}}, headers=user(SID))
    assert r.status_code == 200 and r.json()["sequence"] == 1, r.text
    return await counts(db)


async def assert_unchanged(db: asyncpg.Connection, before: dict[str, int]) -> None:
    assert await counts(db) == before


async def test_overlong_idempotency_key_is_422(client, db, seeded):
    r = await client.patch(
        PREFS,
        json={"purposes": {"marketing_email": "denied"}},
        headers={**user(SID), "Idempotency-Key": "k" * 256},
    )
    assert_problem(r, 422, field_errors=True)
    await assert_unchanged(db, seeded)


@pytest.mark.parametrize(
    "body",
    [
        {"version": "v1", "effective_at": "2031-01-01T00:00:00", "material": False},  # naive
        {"version": "v1", "effective_at": "soon"},
        {"version": "v 1", "effective_at": "2031-01-01T00:00:00Z"},
        {"version": "v1", "effective_at": "2031-01-01T00:00:00Z", "affected_purposes": ["nope"]},
        {"version": "v1", "effective_at": "2031-01-01T00:00:00Z", "material": "very"},
        {"version": "v1", "effective_at": "2031-01-01T00:00:00Z", "extra": 1},
    ],
    ids=["naive_time", "bad_time", "bad_version", "unknown_purpose", "bad_bool", "extra"],
)
async def test_bad_policy_is_422(client, db, seeded, body):
    r = await client.post("/v1/policies", json=body, headers=admin())
    assert_problem(r, 422, field_errors=True)
    assert await counts(db) == seeded


@pytest.mark.parametrize("limit", ["0", "501", "ten"])
async def test_history_bad_limit_is_422(client, db, seeded, limit):
    r = await client.get(f"/v1/subjects/{SID}/history?limit={limit}", headers=user(SID))
    assert_problem(r, 422, field_errors=True)


NUL_INPUTS = {
    "policy_description": (
        "POST",
        "/v1/policies",
        {"version": "v9", "effective_at": "2031-01-01T00:00:00Z", "description": "a\x00b"},
    ),
    "patch_policy_version": (
        "PATCH",
        PREFS,
        {"purposes": {"analytics": "granted"}, "policy_version": "v\x00"},
    ),
    "patch_context_locale": (
        "PATCH",
        PREFS,
        {"purposes": {"analytics": "granted"}, "context": {"locale": "en\x00"}},
    ),
}


@pytest.mark.parametrize("case", list(NUL_INPUTS))
async def test_nul_character_in_a_string_is_422(client, db, seeded, case):
    method, path, body = NUL_INPUTS[case]
    r = await client.request(method, path, json=body, headers=admin())
    assert_problem(r, 422)
    await assert_unchanged(db, seeded)


async def test_policy_times_are_returned_in_utc(client):
    body = {"version": "tz", "effective_at": "2031-01-01T00:00:00+02:00"}
    created = await client.post("/v1/policies", json=body, headers=admin())
    assert created.status_code == 201, created.text
    listed = (await client.get("/v1/policies", headers=admin())).json()["items"]
    assert listed[0]["effective_at"] == "2030-12-31T22:00:00Z"
    assert created.json()["effective_at"] == "2030-12-31T22:00:00Z"
