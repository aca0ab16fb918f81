"""Bad input (API.md § Errors): a clear 4xx problem document, and nothing changes.

Each test starts from a subject with some history, sends one bad request and checks that
``consent_ledger``, ``consent_state`` and ``outbox`` hold exactly what they held before.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from typing import Any

import asyncpg
import pytest

from tests.conftest import admin, user
from tests.support import assert_problem, counts

SID = "bob"
PREFS = f"/v1/subjects/{SID}/preferences"


@pytest.fixture
async def seeded(client, db) -> dict[str, int]:
    """A subject at sequence 2 (profile + one preference change); returns the table counts."""
    r = await client.put(f"/v1/subjects/{SID}", json={"jurisdiction": "US-CA"}, headers=admin())
    assert r.status_code == 200, r.text
    r = await client.patch(
        PREFS, json={"purposes": {"marketing_email": "granted"}}, headers=user(SID)
    )
    assert r.status_code == 200 and r.json()["sequence"] == 2, r.text
    return await counts(db)


async def assert_unchanged(db: asyncpg.Connection, before: dict[str, int]) -> None:
    assert await counts(db) == before
    assert await db.fetchval("SELECT sequence FROM subjects WHERE subject_id = $1", SID) == 2


async def test_malformed_json_is_400(client, db, seeded):
    r = await client.patch(
        PREFS,
        content=b'{"purposes": {"marketing_email": "denied"',
        headers={**user(SID), "Content-Type": "application/json"},
    )
    assert_problem(r, 400)
    await assert_unchanged(db, seeded)


PATCH_422 = {
    "unknown_purpose": {"purposes": {"telepathy": "granted"}},
    "unknown_and_known_purpose": {"purposes": {"marketing_email": "denied", "telepathy": "denied"}},
    "bad_status": {"purposes": {"marketing_email": "maybe"}},
    "status_wrong_case": {"purposes": {"marketing_email": "GRANTED"}},
    "purposes_is_list": {"purposes": ["marketing_email"]},
    "status_is_bool": {"purposes": {"marketing_email": True}},
    "purposes_is_string": {"purposes": "marketing_email"},
    "policy_version_is_int": {"purposes": {"marketing_email": "denied"}, "policy_version": 3},
    "body_is_list": [{"purposes": {"marketing_email": "denied"}}],
    "extra_field": {"purposes": {"marketing_email": "denied"}, "force": True},
    "extra_context_field": {
        "purposes": {"marketing_email": "denied"},
        "context": {"channel": "web", "ip": "1.2.3.4"},
    },
    "unknown_channel": {"purposes": {"marketing_email": "denied"}, "context": {"channel": "fax"}},
    "empty_purposes": {"purposes": {}},
    "missing_purposes": {"context": {"channel": "web"}},
    "unknown_policy_version": {
        "purposes": {"marketing_email": "denied"},
        "policy_version": "1999-01-01",
    },
}


@pytest.mark.parametrize("body", list(PATCH_422.values()), ids=list(PATCH_422))
async def test_patch_schema_violations_are_422(client, db, seeded, body):
    r = await client.patch(PREFS, json=body, headers=user(SID))
    assert_problem(r, 422, field_errors=True)
    await assert_unchanged(db, seeded)


PUT_422 = {
    "jurisdiction_XX": {"jurisdiction": "XX"},
    "jurisdiction_US-ZZ": {"jurisdiction": "US-ZZ"},
    "jurisdiction_Germany": {"jurisdiction": "Germany"},
    "jurisdiction_empty": {"jurisdiction": ""},
    "jurisdiction_missing": {"birth_date": "1990-01-01"},
    "jurisdiction_int": {"jurisdiction": 49},
    "birth_date_future": {
        "jurisdiction": "US-CA",
        "birth_date": (date.today() + timedelta(days=2)).isoformat(),
    },
    "birth_date_garbage": {"jurisdiction": "US-CA", "birth_date": "yesterday"},
    "extra_field": {"jurisdiction": "US-CA", "email": "bob@example.com"},
}


@pytest.mark.parametrize("body", list(PUT_422.values()), ids=list(PUT_422))
async def test_put_subject_schema_violations_are_422(client, db, seeded, body):
    r = await client.put(f"/v1/subjects/{SID}", json=body, headers=admin())
    assert_problem(r, 422, field_errors=True)
    await assert_unchanged(db, seeded)
    assert await db.fetchval("SELECT jurisdiction FROM subjects WHERE subject_id=$1", SID) == (
        "US-CA"
    )


async def test_body_over_64_kib_is_413(client, db, seeded):
    big = {"purposes": {"marketing_email": "denied"}, "context": {"notice_id": "x" * 70_000}}
    r = await client.patch(PREFS, json=big, headers=user(SID))
    assert_problem(r, 413)
    await assert_unchanged(db, seeded)


async def _patch_chunked(client: Any, size: int) -> Any:
    """A PATCH without Content-Length (Transfer-Encoding: chunked), ``size`` bytes of padding."""

    async def chunks():  # type: ignore[no-untyped-def]
        yield b'{"purposes": {"marketing_email": "denied"}'
        for _ in range(size // 4096):
            yield b" " * 4096  # valid JSON whitespace: only the size is wrong
        yield b"}"

    return await client.patch(
        PREFS, content=chunks(), headers={**user(SID), "Content-Type": "application/json"}
    )


async def test_chunked_body_over_64_kib_is_rejected_and_changes_nothing(client, db, seeded):
    r = await _patch_chunked(client, 80 * 1024)
    assert 400 <= r.status_code < 500
    assert_problem(r, r.status_code)
    await assert_unchanged(db, seeded)


async def test_chunked_body_under_limit_is_accepted(client, db, seeded):
    r = await _patch_chunked(client, 16 * 1024)
    assert r.status_code == 200, r.text
    assert r.json()["purposes"]["marketing_email"]["status"] == "denied"


async def test_chunked_body_over_64_kib_is_413(client, db, seeded):
    assert_problem(await _patch_chunked(client, 80 * 1024), 413)


async def test_batch_of_1001_is_422(client, db, seeded):
    items = [{"subject_id": SID, "purpose": "sale"}] * 1001
    r = await client.post("/v1/decisions:batch", json={"items": items}, headers=admin())
    assert_problem(r, 422, field_errors=True)
    # the limit itself is accepted
    r = await client.post("/v1/decisions:batch", json={"items": items[:1000]}, headers=admin())
    assert r.status_code == 200 and len(r.json()["items"]) == 1000
    await assert_unchanged(db, seeded)


@pytest.mark.parametrize(
    "items",
    [
        [{"subject_id": SID, "purpose": "telepathy"}],
        [{"subject_id": SID, "purpose": "sale"}, {"subject_id": SID, "purpose": "nope"}],
        [],
        [{"subject_id": "bad id", "purpose": "sale"}],
        [{"subject_id": SID}],
    ],
    ids=["unknown_purpose", "one_unknown_purpose", "empty", "bad_subject_id", "no_purpose"],
)
async def test_bad_batch_is_422(client, db, seeded, items):
    r = await client.post("/v1/decisions:batch", json={"items": items}, headers=admin())
    assert_problem(r, 422, field_errors=True)
    await assert_unchanged(db, seeded)


BAD_IDS = {"space": "bad%20id", "dollar": "bad$id", "too_long": "a" * 129, "unicode": "b%C3%B6b"}


@pytest.mark.parametrize("sid", list(BAD_IDS.values()), ids=list(BAD_IDS))
async def test_bad_subject_id_is_422(client, db, seeded, sid):
    calls = [
        ("PUT", f"/v1/subjects/{sid}", {"jurisdiction": "US-CA"}),
        ("GET", f"/v1/subjects/{sid}/preferences", None),
        ("PATCH", f"/v1/subjects/{sid}/preferences", {"purposes": {"sale": "denied"}}),
        ("GET", f"/v1/subjects/{sid}/decisions?purpose=sale", None),
        ("GET", f"/v1/subjects/{sid}/history", None),
        ("GET", f"/v1/subjects/{sid}/export", None),
    ]
    for method, path, body in calls:
        r = await client.request(method, path, json=body, headers=admin())
        assert_problem(r, 422, field_errors=True)
    await assert_unchanged(db, seeded)


async def test_subject_id_of_128_chars_is_accepted(client, db, seeded):
    sid = "A0._:@-" + "z" * 121
    r = await client.patch(
        f"/v1/subjects/{sid}/preferences", json={"purposes": {"sale": "denied"}}, headers=admin()
    )
    assert r.status_code == 200 and r.json()["subject_id"] == sid, r.text


async def test_unknown_decision_purpose_is_422(client, db, seeded):
    r = await client.get(f"/v1/subjects/{SID}/decisions?purpose=telepathy", headers=admin())
    assert_problem(r, 422, field_errors=True)
    r = await client.get(f"/v1/subjects/{SID}/decisions", headers=admin())
    assert_problem(r, 422, field_errors=True)
    await assert_unchanged(db, seeded)


@pytest.mark.parametrize("if_match", ['"1"', '"0"', '"17"', 'W/"3"', "garbage"])
async def test_stale_if_match_is_412(client, db, seeded, if_match):
    r = await client.patch(
        PREFS,
        json={"purposes": {"marketing_email": "denied"}},
        headers={**user(SID), "If-Match": if_match},
    )
    assert_problem(r, 412)
    assert r.headers["etag"] == '"2"'
    await assert_unchanged(db, seeded)


async def test_duplicate_policy_version_is_409(client, db, seeded):
    body = {
        "version": "2031-01",
        "effective_at": (datetime.now(UTC) + timedelta(days=30)).isoformat(),
        "material": False,
        "affected_purposes": ["analytics"],
    }
    r = await client.post("/v1/policies", json=body, headers=admin())
    assert r.status_code == 201, r.text
    before = await counts(db)
    r = await client.post("/v1/policies", json={**body, "material": True}, headers=admin())
    problem = assert_problem(r, 409)
    assert isinstance(problem.get("code"), str) and problem["code"], problem
    assert await counts(db) == before
    assert (
        await db.fetchval("SELECT material FROM policy_versions WHERE version='2031-01'") is False
    )


@pytest.mark.parametrize(
    "cursor",
    ["!!!", "c2VxOmFiYw", "Zm9vOjE", "x" * 201],
    ids=["not_base64", "seq_not_number", "wrong_kind", "too_long"],
)
async def test_history_malformed_cursor_is_422(client, db, seeded, cursor):
    r = await client.get(f"/v1/subjects/{SID}/history?cursor={cursor}", headers=user(SID))
    assert_problem(r, 422, field_errors=True)
    await assert_unchanged(db, seeded)
