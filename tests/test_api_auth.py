"""Authorization matrix (API.md § Auth): every endpoint x every kind of credential.

No or invalid credentials → 401; valid credentials lacking the scope, or a user token for
another subject → 403; `admin` implies every scope. Every 4xx is a problem document.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import asyncpg
import jwt
import pytest

from consent.api.auth import hash_key, new_key
from tests.conftest import JWT_SECRET, admin, eventually, user

SUBJECT = "alice"
OTHER = "mallory"
SCOPES = ("preferences:read", "preferences:write", "decisions:read", "admin")


@dataclass(frozen=True)
class Endpoint:
    name: str
    method: str
    path: str
    body: dict[str, Any] | None
    scope: str | None  # None: any authenticated caller
    per_subject: bool = True  # a user token must be the subject's own
    user_allowed: bool = True


ENDPOINTS = [
    Endpoint(
        "put_subject",
        "PUT",
        f"/v1/subjects/{SUBJECT}",
        {"jurisdiction": "US-CA"},
        "preferences:write",
    ),
    Endpoint(
        "get_preferences", "GET", f"/v1/subjects/{SUBJECT}/preferences", None, "preferences:read"
    ),
    Endpoint(
        "patch_preferences",
        "PATCH",
        f"/v1/subjects/{SUBJECT}/preferences",
        {"purposes": {"analytics": "granted"}},
        "preferences:write",
    ),
    Endpoint(
        "get_decision",
        "GET",
        f"/v1/subjects/{SUBJECT}/decisions?purpose=analytics",
        None,
        "decisions:read",
    ),
    Endpoint("history", "GET", f"/v1/subjects/{SUBJECT}/history", None, "preferences:read"),
    Endpoint("export", "GET", f"/v1/subjects/{SUBJECT}/export", None, "preferences:read"),
    Endpoint("signals", "GET", f"/v1/subjects/{SUBJECT}/signals", None, "preferences:read"),
    Endpoint(
        "batch_decisions",
        "POST",
        "/v1/decisions:batch",
        {"items": [{"subject_id": SUBJECT, "purpose": "analytics"}]},
        "decisions:read",
    ),
    Endpoint("list_policies", "GET", "/v1/policies", None, None, per_subject=False),
    Endpoint(
        "publish_policy",
        "POST",
        "/v1/policies",
        {
            "version": "2030-01-01",
            "effective_at": "2030-01-01T00:00:00Z",
            "material": False,
            "affected_purposes": ["analytics"],
        },
        "admin",
        per_subject=False,
        user_allowed=False,
    ),
]


async def make_key(db: asyncpg.Connection, scopes: list[str], revoked: bool = False) -> str:
    """Insert an API key the way ``consentctl keys create`` does; return the raw key."""
    key_id, raw = new_key()
    await db.execute(
        "INSERT INTO api_keys (id, key_hash, name, scopes, revoked_at) "
        "VALUES ($1, $2, $3, $4, CASE WHEN $5 THEN now() END)",
        key_id,
        hash_key(raw),
        f"test {' '.join(scopes)}",
        sorted(scopes),
        revoked,
    )
    return raw


def bearer(claims: dict[str, Any], secret: str = JWT_SECRET) -> dict[str, str]:
    return {"Authorization": f"Bearer {jwt.encode(claims, secret, 'HS256')}"}


# credential name → (builder, expected status or None when it depends on the endpoint)
INVALID: dict[str, Any] = {
    "none": lambda: {},
    "basic_auth": lambda: {"Authorization": "Basic YWxpY2U6c2VjcmV0"},
    "unknown_api_key": lambda: {"X-API-Key": "ck_deadbeef_not-a-real-key"},
    "empty_bearer": lambda: {"Authorization": "Bearer "},
    "garbage_jwt": lambda: {"Authorization": "Bearer not.a.jwt"},
    "expired_jwt": lambda: bearer({"sub": SUBJECT, "exp": int(time.time()) - 60}),
    "jwt_without_exp": lambda: bearer({"sub": SUBJECT}),
    "jwt_wrong_secret": lambda: bearer(
        {"sub": SUBJECT, "exp": int(time.time()) + 600}, "another-secret-0123456789abcdef0123"
    ),
    "jwt_alg_none": lambda: {
        "Authorization": "Bearer "
        + jwt.encode({"sub": SUBJECT, "exp": int(time.time()) + 600}, None, "none")
    },
}
VALID = ["user_other", "user_self", "dev_admin", *(f"key:{s}" for s in SCOPES), "key:read+write"]


def assert_problem(r: Any, status: int) -> dict[str, Any]:
    assert r.status_code == status, (r.status_code, r.text)
    assert r.headers["content-type"].startswith("application/problem+json"), r.headers
    body = r.json()
    for field in ("type", "title", "status", "detail"):
        assert field in body, body
    assert body["status"] == status
    assert isinstance(body["title"], str) and body["title"]
    assert isinstance(body["detail"], str) and body["detail"]
    return body


def expected_status(ep: Endpoint, cred: str) -> int:
    ok = 201 if (ep.method, ep.path) == ("POST", "/v1/policies") else 200
    if cred == "user_self":
        return ok if ep.user_allowed else 403
    if cred == "user_other":
        if not ep.user_allowed or ep.per_subject:
            return 403
        return ok
    if cred == "dev_admin":
        return ok
    scopes = set(cred.removeprefix("key:").split("+"))
    scopes = {"preferences:read", "preferences:write"} if scopes == {"read", "write"} else scopes
    if ep.scope is None or "admin" in scopes or ep.scope in scopes:
        return ok
    return 403


async def credentials(db: asyncpg.Connection, cred: str) -> dict[str, str]:
    if cred == "user_self":
        return user(SUBJECT)
    if cred == "user_other":
        return user(OTHER)
    if cred == "dev_admin":
        return admin()
    scopes = cred.removeprefix("key:").split("+")
    if scopes == ["read", "write"]:
        scopes = ["preferences:read", "preferences:write"]
    return {"X-API-Key": await make_key(db, scopes)}


async def call(client: Any, ep: Endpoint, headers: dict[str, str]) -> Any:
    return await client.request(ep.method, ep.path, json=ep.body, headers=headers)


@pytest.mark.parametrize("ep", ENDPOINTS, ids=lambda e: e.name)
async def test_invalid_credentials_are_401(client, db, ep: Endpoint):
    # one database for all invalid credentials of an endpoint: nothing may be written
    for cred, build in INVALID.items():
        r = await call(client, ep, build())
        try:
            assert_problem(r, 401)
            assert "www-authenticate" in r.headers
        except AssertionError as exc:
            raise AssertionError(f"credential {cred!r}: {exc}") from exc
    for table in ("consent_ledger", "outbox", "subjects", "policy_versions"):
        assert await db.fetchval(f"SELECT count(*) FROM {table}") == 0, table


@pytest.mark.parametrize("ep", ENDPOINTS, ids=lambda e: e.name)
async def test_revoked_key_is_401(client, db, ep: Endpoint):
    raw = await make_key(db, ["admin"], revoked=True)
    assert_problem(await call(client, ep, {"X-API-Key": raw}), 401)
    # the same request with a live admin key succeeds: only the revocation made it fail
    live = await make_key(db, ["admin"])
    r = await call(client, ep, {"X-API-Key": live})
    assert r.status_code in (200, 201), r.text


@pytest.mark.parametrize("cred", VALID)
@pytest.mark.parametrize("ep", ENDPOINTS, ids=lambda e: e.name)
async def test_scope_and_subject_matrix(client, db, ep: Endpoint, cred: str):
    headers = await credentials(db, cred)
    want = expected_status(ep, cred)
    ledger_before = await db.fetchval("SELECT count(*) FROM consent_ledger")
    outbox_before = await db.fetchval("SELECT count(*) FROM outbox")
    r = await call(client, ep, headers)
    if want >= 400:
        assert_problem(r, want)
        # a refused write changes nothing and emits nothing
        assert await db.fetchval("SELECT count(*) FROM consent_ledger") == ledger_before
        assert await db.fetchval("SELECT count(*) FROM outbox") == outbox_before
        assert await db.fetchval("SELECT count(*) FROM policy_versions") == 0
    else:
        assert r.status_code == want, (r.status_code, r.text)
        assert r.headers["content-type"].startswith("application/json")


async def test_key_with_several_scopes_gets_their_union(client, db):
    raw = await make_key(db, ["preferences:read", "decisions:read"])
    h = {"X-API-Key": raw}
    assert (await client.get(f"/v1/subjects/{SUBJECT}/preferences", headers=h)).status_code == 200
    r = await client.get(f"/v1/subjects/{SUBJECT}/decisions?purpose=sale", headers=h)
    assert r.status_code == 200
    r = await client.patch(
        f"/v1/subjects/{SUBJECT}/preferences", json={"purposes": {"sale": "denied"}}, headers=h
    )
    assert_problem(r, 403)


async def test_batch_with_user_token_covering_another_subject_is_403(client):
    body = {
        "items": [
            {"subject_id": SUBJECT, "purpose": "analytics"},
            {"subject_id": OTHER, "purpose": "analytics"},
        ]
    }
    assert_problem(await client.post("/v1/decisions:batch", json=body, headers=user(SUBJECT)), 403)


async def test_key_revoked_after_use_stops_working(client, db):
    raw = await make_key(db, ["preferences:read"])
    h = {"X-API-Key": raw}
    assert (await client.get(f"/v1/subjects/{SUBJECT}/preferences", headers=h)).status_code == 200
    await db.execute("UPDATE api_keys SET revoked_at = now() WHERE key_hash = $1", hash_key(raw))

    # valid keys are cached per worker until the revocation's notification arrives
    # (api/key_cache.py; the bound is tested in tests/test_freshness.py)
    async def refused() -> bool:
        r = await client.get(f"/v1/subjects/{SUBJECT}/preferences", headers=h)
        return r.status_code == 401

    await eventually(refused)
    assert_problem(await client.get(f"/v1/subjects/{SUBJECT}/preferences", headers=h), 401)
