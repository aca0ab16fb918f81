"""Authorization matrix: every route of every HTTP API the project serves, against every
kind of credential and every scope. A route added without an entry here fails the test.

For each route the entry says who may call it, and must be what the OpenAPI document
declares (its ``security``, generated from the route's ``needs(...)``). The test then calls
the route with each credential and expects what the DOCUMENT says: 401 (no credentials),
403 (not allowed) or anything else (allowed: the request got past authorization; it may
still be a 404 or 409). A refused request writes nothing. So the document, this table and
the enforcement cannot disagree.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

import asyncpg
import httpx
import pytest
from fastapi.routing import APIRoute

from consent.api.app import create_app
from consent.api.auth import SCOPES
from consent.settings import Settings
from consentctl.serve import health_app
from propagator.demo import demo_processor_app
from tests.conftest import admin, user, webhook_secret
from tests.test_minors_guardians import born_years_ago, make_key, verification

SUBJECT, OTHER, KID, GUARDIAN = "alice", "mallory", "kid-m", "mum-m"


@dataclass(frozen=True)
class Rule:
    scope: str | None  # what a key needs; None: any valid credential (public: see below)
    also: str | None = None  # another scope that is enough on its own
    user: str = "own"  # user tokens: "own" subject, "any" subject, "never", "guardian_id"
    guardian: bool = True  # a linked guardian may call it for the minor
    public: bool = False  # no credentials needed
    body: dict[str, Any] | None = None
    query: str = ""


PUBLIC = Rule(None, user="any", public=True)
ADMIN = Rule("admin", user="never", guardian=False)
POLICY = {"version": "2031-01", "effective_at": "2031-01-01T00:00:00Z", "material": False}
PATCH = {"purposes": {"analytics": "granted"}}

# (method, OpenAPI path) → who may call it
CONSENT_API: dict[tuple[str, str], Rule] = {
    ("GET", "/v1/purposes"): PUBLIC,
    ("GET", "/.well-known/gpc.json"): PUBLIC,
    ("GET", "/healthz"): PUBLIC,
    ("GET", "/readyz"): PUBLIC,
    ("GET", "/metrics"): PUBLIC,
    ("PUT", "/v1/subjects/{subject_id}"): Rule(
        "preferences:write", also="minors:write", body={"jurisdiction": "DE"}
    ),
    ("GET", "/v1/subjects/{subject_id}/preferences"): Rule("preferences:read"),
    ("PATCH", "/v1/subjects/{subject_id}/preferences"): Rule("preferences:write", body=PATCH),
    ("GET", "/v1/subjects/{subject_id}/decisions"): Rule(
        "decisions:read", query="?purpose=analytics"
    ),
    ("GET", "/v1/subjects/{subject_id}/history"): Rule("preferences:read"),
    ("GET", "/v1/subjects/{subject_id}/export"): Rule("preferences:read"),
    ("POST", "/v1/decisions:batch"): Rule("decisions:read", body={"items": []}),
    ("GET", "/v1/policies"): Rule(None, user="any"),
    ("POST", "/v1/policies"): Rule("admin", user="never", guardian=False, body=POLICY),
    ("POST", "/v1/subjects/{subject_id}/guardians"): Rule(
        "minors:write",
        user="never",
        guardian=False,
        body={"guardian_id": "dad-m", "verification": verification()},
    ),
    ("GET", "/v1/subjects/{subject_id}/guardians"): Rule("preferences:read"),
    ("DELETE", "/v1/subjects/{subject_id}/guardians/{guardian_id}"): Rule(
        "minors:write", user="guardian_id"
    ),
    ("POST", "/v1/admin/subjects/{subject_id}/collected-without-consent"): Rule(
        "admin", user="never", guardian=False, body={}
    ),
    ("POST", "/v1/subjects/{subject_id}/erasure"): Rule("rights:erase"),
    ("GET", "/v1/subjects/{subject_id}/erasure"): Rule("preferences:read"),
    ("GET", "/v1/subjects/{subject_id}/propagation"): Rule("preferences:read"),
    ("POST", "/v1/admin/replays"): Rule(
        "admin",
        user="never",
        guardian=False,
        body={"since": "2026-01-01T00:00:00Z", "dry_run": True},
    ),
    ("GET", "/v1/admin/replays/{job_id}"): ADMIN,
    ("GET", "/v1/admin/deliveries"): ADMIN,
    ("POST", "/v1/admin/deliveries/{delivery_id}/redrive"): ADMIN,
    ("GET", "/v1/admin/audit"): ADMIN,
    ("GET", "/preference-center/"): PUBLIC,
    ("GET", "/v1/subjects/{subject_id}/signals"): Rule("preferences:read"),
    # merges are recorded by the site's backend; the person (never a guardian) may undo one
    ("POST", "/v1/subjects/{subject_id}/aliases"): Rule(
        "preferences:write", user="never", guardian=False, body={"anonymous_id": "anon:matrix"}
    ),
    ("DELETE", "/v1/subjects/{subject_id}/aliases/{anonymous_id}"): Rule(
        "preferences:write", guardian=False
    ),
    ("GET", "/v1/subjects/{subject_id}/aliases"): Rule("preferences:read"),
    ("GET", "/v1/admin/parked"): ADMIN,
    ("POST", "/v1/admin/parked/{parked_id}/retry"): ADMIN,
    ("DELETE", "/v1/admin/parked/{parked_id}"): ADMIN,
    # the transparency log: proofs and receipts as preferences; checkpoints and keys public
    ("GET", "/v1/subjects/{subject_id}/proof"): Rule("preferences:read", query="?sequence=1"),
    ("GET", "/v1/subjects/{subject_id}/receipts/{sequence}"): Rule("preferences:read"),
    ("GET", "/v1/checkpoints/latest"): PUBLIC,
    ("GET", "/v1/checkpoints/{tree_size}"): PUBLIC,
    ("GET", "/v1/checkpoints/consistency"): Rule(
        None, user="any", public=True, query="?from=1&to=1"
    ),
    ("GET", "/.well-known/consent-keys.json"): PUBLIC,
    ("GET", "/v1/admin/drift"): ADMIN,
    ("POST", "/v1/admin/drift/repair"): Rule(
        "admin", user="never", guardian=False, body={"subject_id": "nobody-m"}
    ),
    ("POST", "/v1/admin/imports"): ADMIN,
    ("GET", "/v1/admin/imports/{job_id}"): ADMIN,
}
# The health endpoints of `consentctl serve relay|propagator --health-port`.
WORKER_HEALTH = {("GET", "/healthz"), ("GET", "/readyz"), ("GET", "/metrics")}
# The demo processors of `consentctl dev` and compose: deliveries must be signed.
DEMO_PROCESSOR = {("POST", "/consent"): "signed", ("POST", "/_control"): "demo",
                  ("GET", "/_received"): "demo"}  # fmt: skip

# user_self: alice's own token; user_other: mallory's, on alice; guardian: a linked guardian's,
# on the minor; named_guardian: that guardian's, on alice, naming itself as `{guardian_id}`;
# key:S a key with only S; key:- a key with no scope; all_but_declared: every scope but the
# ones the operation declares.
CREDENTIALS = ["none", "user_self", "user_other", "guardian", "named_guardian", "dev_admin"]
CREDENTIALS += [f"key:{s}" for s in SCOPES] + ["key:-", "all_but_declared"]
Security = list[dict[str, list[str]]]


def operations(app: Any) -> set[tuple[str, str]]:
    doc = app.openapi()
    return {(m.upper(), p) for p, ops in doc["paths"].items() for m in ops}


def test_every_route_has_an_entry(settings):
    routes = operations(create_app(settings))
    assert routes == set(CONSENT_API), (
        f"routes without an entry: {sorted(routes - set(CONSENT_API))}; "
        f"entries without a route: {sorted(set(CONSENT_API) - routes)}"
    )


def _routes(app: Any, prefix: str = "") -> set[tuple[str, str]]:
    """Every route, documented or not, including those of included routers."""
    found: set[tuple[str, str]] = set()
    for r in app.routes:
        if isinstance(r, APIRoute):
            found |= {(m, prefix + r.path) for m in r.methods - {"HEAD"}}
        elif hasattr(r, "original_router"):  # FastAPI's lazily included router
            ctx = getattr(r, "include_context", None)
            found |= _routes(r.original_router, prefix + str(getattr(ctx, "prefix", "") or ""))
    return found


def test_every_worker_and_demo_route_has_an_entry(settings):
    assert _routes(health_app(settings)) == WORKER_HEALTH
    assert _routes(demo_processor_app("email", webhook_secret())) == set(DEMO_PROCESSOR)


def declared(rule: Rule) -> Security:
    """The entry as OpenAPI security requirements, in the order the document lists them."""
    if rule.public:
        return []
    scopes = [s for s in (rule.scope, rule.also) if s]
    out: Security = [{"ApiKey": [s]} for s in dict.fromkeys([*scopes, "admin"])] if scopes else []
    out = out or [{"ApiKey": []}]
    roles = {"never": [], "any": [[]], "guardian_id": [["named-guardian"]]}.get(
        rule.user, [["subject"], ["guardian"]] if rule.guardian else [["subject"]]
    )
    return out + [{"UserToken": r} for r in roles]


def test_every_entry_is_what_the_document_declares(settings):
    doc = create_app(settings).openapi()
    wrong = {
        f"{m} {p}": (declared(rule), doc["paths"][p][m.lower()]["security"])
        for (m, p), rule in CONSENT_API.items()
        if declared(rule) != doc["paths"][p][m.lower()]["security"]
    }
    assert not wrong, f"entry vs document: {wrong}"


def declared_scopes(security: Security) -> set[str]:
    return {s for r in security for s in r.get("ApiKey", [])}


def key_scopes(cred: str, security: Security) -> set[str]:
    if cred == "all_but_declared":
        return set(SCOPES) - declared_scopes(security) - {"admin"}
    return {"admin"} if cred == "dev_admin" else set(cred.removeprefix("key:").split()) - {"-"}


ROLE_OF = {"user_self": "subject", "guardian": "guardian", "named_guardian": "named-guardian"}


def expected(security: Security, cred: str) -> str:
    """``allow``, ``401`` or ``403``, from the operation's declared security alone."""
    if not security:
        return "allow"
    if cred == "none":
        return "401"
    if cred in ("dev_admin", "all_but_declared") or cred.startswith("key:"):
        held = key_scopes(cred, security)
        alternatives = [set(r["ApiKey"]) for r in security if "ApiKey" in r]
        ok = any("admin" in held or need <= held for need in alternatives)
    else:
        roles = [r["UserToken"] for r in security if "UserToken" in r]
        ok = [] in roles or [ROLE_OF.get(cred)] in roles
    return "allow" if ok else "403"


async def headers_for(db: asyncpg.Connection, cred: str, security: Security) -> dict[str, str]:
    if cred == "none":
        return {}
    if cred == "dev_admin":
        return admin()
    if cred.startswith("key:") or cred == "all_but_declared":
        return await make_key(db, sorted(key_scopes(cred, security)))
    token_of = {"user_self": SUBJECT, "user_other": OTHER}
    return user(token_of.get(cred, GUARDIAN))


def url(path: str, rule: Rule, cred: str) -> str:
    subject = KID if cred == "guardian" else SUBJECT
    return (
        path.replace("{subject_id}", subject)
        .replace("{guardian_id}", GUARDIAN if cred == "named_guardian" else "dad-m")
        .replace("{job_id}", str(uuid.uuid4()))
        .replace("{delivery_id}", str(uuid.uuid4()))
        .replace("{parked_id}", "1")
        .replace("{sequence}", "1")
        .replace("{tree_size}", "1")
        .replace("{anonymous_id}", "anon:matrix")
        + rule.query
    )


def body_for(method: str, path: str, rule: Rule, cred: str) -> dict[str, Any] | None:
    if path == "/v1/decisions:batch":
        subject = KID if cred == "guardian" else SUBJECT
        return {"items": [{"subject_id": subject, "purpose": "analytics"}]}
    return rule.body


async def written(db: asyncpg.Connection) -> tuple[int, ...]:
    return tuple(
        [
            await db.fetchval(f"SELECT count(*) FROM {t}")
            for t in ("consent_ledger", "outbox", "guardian_links", "policy_versions")
        ]
    )


@pytest.mark.parametrize(
    "route", sorted(CONSENT_API), ids=lambda r: f"{r[0]} {r[1]}" if isinstance(r, tuple) else r
)
async def test_authorization_matrix(client, db, route):
    method, path = route
    rule = CONSENT_API[route]
    doc = (await client.get("/openapi.json")).json()  # the document the server publishes
    security = doc["paths"][path][method.lower()]["security"]
    await client.put(f"/v1/subjects/{SUBJECT}", json={"jurisdiction": "US-CA"}, headers=admin())
    minor = {"jurisdiction": "DE", "birth_date": born_years_ago(10)}
    await client.put(f"/v1/subjects/{KID}", json=minor, headers=admin())
    link = {"guardian_id": GUARDIAN, "verification": verification()}
    r = await client.post(f"/v1/subjects/{KID}/guardians", json=link, headers=admin())
    assert r.status_code == 201, r.text
    failures = []
    for cred in CREDENTIALS:
        want = expected(security, cred)
        before = await written(db)
        r = await client.request(
            method,
            url(path, rule, cred),
            json=body_for(method, path, rule, cred),
            headers=await headers_for(db, cred, security),
        )
        got = str(r.status_code) if r.status_code in (401, 403) else "allow"
        if got != want:
            failures.append(f"{cred}: expected {want}, got {r.status_code} {r.text[:200]}")
        elif want != "allow":
            assert r.headers["content-type"].startswith("application/problem+json"), cred
            assert await written(db) == before, f"{cred}: a refused request wrote something"
        assert r.status_code < 500, (cred, r.text)
    assert not failures, "\n".join(failures)


async def test_worker_health_needs_no_credentials(settings):
    app = health_app(settings)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://w") as c:
        for method, path in sorted(WORKER_HEALTH):
            r = await c.request(method, path)
            assert r.status_code not in (401, 403), path


async def test_demo_processor_accepts_only_signed_deliveries():
    app = demo_processor_app("email", webhook_secret())
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://d") as c:
        r = await c.post("/consent", json={"event_id": "x"})
        assert r.status_code == 401
        forged = {"webhook-id": "x", "webhook-timestamp": "1", "webhook-signature": "v1,AAAA"}
        assert (await c.post("/consent", json={}, headers=forged)).status_code == 401
        assert (await c.get("/_received")).json()["count"] == 0


def test_settings_fixture_is_a_dev_stack(settings: Settings):
    """The matrix includes the dev admin key because the tests run as `consentctl dev`."""
    assert settings.dev_stack and not Settings().dev_stack


async def test_dev_token_minting_needs_a_dev_stack(settings: Settings):
    """The preference center's dev sign-in helper mints tokens for anyone: a setting read
    from the environment (as under `consentctl serve`) never turns it on."""
    plain = Settings.model_validate(
        {**settings.model_dump(), "preference_center_dev": True, "scheduler_enabled": False}
    )
    assert not plain.dev_stack
    for s, want in ((plain, 404), (plain.as_dev_stack(), 200)):
        app = create_app(s)
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://api") as c:
                r = await c.post("/preference-center/dev/token", json={"subject_id": "alice"})
                assert r.status_code == want, r.text
