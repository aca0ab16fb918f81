"""RS256 tokens against a real local JWKS endpoint (an HTTP server in a thread) that is
slow, down or rotating its keys: the API keeps answering, serves the last good keys while
the provider is down, refreshes one at a time, and requires ``iss`` and ``aud``."""

from __future__ import annotations

import asyncio
import contextlib
import json
import threading
import time
from collections.abc import AsyncIterator, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa

from consent.api.app import create_app
from consent.settings import Settings
from tests.conftest import admin

ISSUER = "https://idp.test/"
AUDIENCE = "consent-api"


class Provider:
    """A JWKS endpoint whose behaviour the test changes: keys, delay, status, up/down."""

    def __init__(self) -> None:
        self.keys: dict[str, Any] = {}
        self.delay = 0.0
        self.status = 200
        self.hits = 0
        provider = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                provider.hits += 1
                time.sleep(provider.delay)
                body = json.dumps(
                    {"keys": [dict(jwk, kid=kid) for kid, jwk in provider.jwks().items()]}
                ).encode()
                with contextlib.suppress(OSError):  # the client may have given up (slow)
                    self.send_response(provider.status)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    self.wfile.write(body)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/jwks.json"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def jwks(self) -> dict[str, Any]:
        out = {}
        for kid, private in self.keys.items():
            jwk = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(private.public_key()))
            out[kid] = {**jwk, "use": "sig", "alg": "RS256"}
        return out

    def add_key(self, kid: str) -> None:
        self.keys[kid] = rsa.generate_private_key(public_exponent=65537, key_size=2048)

    def token(self, kid: str, sub: str = "alice", **claims: Any) -> dict[str, str]:
        body = {"sub": sub, "exp": int(time.time()) + 600, "iss": ISSUER, "aud": AUDIENCE}
        body.update(claims)
        body = {k: v for k, v in body.items() if v is not None}
        token = jwt.encode(body, self.keys[kid], "RS256", headers={"kid": kid})
        return {"Authorization": f"Bearer {token}"}

    def stop(self) -> None:
        """Down: nothing listens on the port any more (connection refused)."""
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def provider() -> Iterator[Provider]:
    p = Provider()
    p.add_key("k1")
    yield p
    with contextlib.suppress(OSError):
        p.stop()


def jwks_settings(settings: Settings, provider: Provider, **kw: Any) -> Settings:
    values = {
        "jwt_jwks_url": provider.url,
        "jwt_issuer": ISSUER,
        "jwt_audience": AUDIENCE,
        "jwt_jwks_timeout_s": 0.5,
        "jwt_jwks_refresh_s": 300.0,
        "jwt_jwks_max_stale_s": 3600.0,
        "scheduler_enabled": False,
        **kw,
    }
    return Settings.model_validate({**settings.model_dump(), **values}).as_dev_stack()


async def _client(s: Settings) -> AsyncIterator[tuple[httpx.AsyncClient, Any]]:
    app = create_app(s)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://api") as c:
            yield c, app.state.jwks


@pytest.fixture
async def api(settings: Settings, provider: Provider):  # type: ignore[no-untyped-def]
    async for pair in _client(jwks_settings(settings, provider)):
        yield pair


PREFS = "/v1/subjects/alice/preferences"


async def test_valid_token_and_claims_that_must_match(api, provider):
    client, _ = api
    assert (await client.get(PREFS, headers=provider.token("k1"))).status_code == 200
    for bad in ({"aud": "another-app"}, {"aud": None}, {"iss": "https://evil/"}, {"iss": None}):
        r = await client.get(PREFS, headers=provider.token("k1", **bad))
        assert r.status_code == 401, (bad, r.text)
        assert r.headers["content-type"].startswith("application/problem+json")
    # an HS256 token made with the (still configured) shared secret is not accepted either
    hs = jwt.encode(
        {"sub": "alice", "exp": int(time.time()) + 60, "iss": ISSUER, "aud": AUDIENCE},
        "test-jwt-secret-0123456789abcdef0123",
        "HS256",
    )
    r = await client.get(PREFS, headers={"Authorization": f"Bearer {hs}"})
    assert r.status_code == 401


async def test_outage_with_a_cached_key_answers_normally(api, provider):
    client, jwks = api
    assert (await client.get(PREFS, headers=provider.token("k1"))).status_code == 200
    provider.stop()
    jwks.fetched_at -= 301  # the cache is due for a refresh, and the provider is down
    for _ in range(3):
        t0 = time.monotonic()
        r = await client.get(PREFS, headers=provider.token("k1"))
        assert r.status_code == 200, r.text
        assert time.monotonic() - t0 < 0.4
    await asyncio.sleep(0.6)
    assert jwks.last_failed  # the background refresh failed; the last good keys stand
    assert (await client.get(PREFS, headers=provider.token("k1"))).status_code == 200
    # a key the cache never had cannot be checked while the provider is down: 503
    provider.add_key("k2")
    r = await client.get(PREFS, headers=provider.token("k2"))
    assert r.status_code == 503, r.text
    assert r.json()["code"] == "identity_provider_unavailable" and "retry-after" in r.headers
    # API keys do not depend on the provider at all
    assert (await client.get(PREFS, headers=admin())).status_code == 200


async def test_staleness_is_bounded(settings, provider):
    async for client, jwks in _client(jwks_settings(settings, provider, jwt_jwks_max_stale_s=60)):
        assert (await client.get(PREFS, headers=provider.token("k1"))).status_code == 200
        provider.stop()
        jwks.fetched_at -= 61
        r = await client.get(PREFS, headers=provider.token("k1"))
        assert r.status_code == 503, r.text


async def test_nothing_cached_and_provider_down_is_503_quickly(settings, provider):
    provider.stop()
    async for client, _ in _client(jwks_settings(settings, provider)):
        t0 = time.monotonic()
        r = await client.get(PREFS, headers=provider.token("k1"))
        assert r.status_code == 503 and time.monotonic() - t0 < 2
        assert r.json()["code"] == "identity_provider_unavailable"


async def test_slow_provider_never_stalls_the_event_loop(api, provider):
    client, jwks = api
    assert (await client.get(PREFS, headers=provider.token("k1"))).status_code == 200
    provider.delay = 3.0  # far beyond the 0.5 s timeout
    jwks.fetched_at -= 301
    t0 = time.monotonic()
    cached, admin_read = await asyncio.gather(
        client.get(PREFS, headers=provider.token("k1")), client.get(PREFS, headers=admin())
    )
    assert cached.status_code == admin_read.status_code == 200
    assert time.monotonic() - t0 < 0.4
    # a token with a new kid waits for one bounded refresh, not the provider's 3 s
    provider.add_key("k2")
    t0 = time.monotonic()
    r = await client.get(PREFS, headers=provider.token("k2"))
    assert r.status_code == 503 and time.monotonic() - t0 < 1.5, r.text


async def test_rotation_and_one_refresh_at_a_time(api, provider):
    client, jwks = api
    assert (await client.get(PREFS, headers=provider.token("k1"))).status_code == 200
    hits = provider.hits
    provider.add_key("k2")
    del provider.keys["k1"]
    provider.delay = 0.2
    jwks.attempted_at -= 11  # an unknown kid refetches at most every 10 s
    # twenty concurrent requests signed with the new key: one fetch serves them all
    answers = await asyncio.gather(
        *(client.get(PREFS, headers=provider.token("k2")) for _ in range(20))
    )
    assert {r.status_code for r in answers} == {200}
    assert provider.hits == hits + 1
    # the retired key is gone with the refresh
    provider.keys["k1"] = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    r = await client.get(PREFS, headers=provider.token("k1"))
    assert r.status_code == 401, r.text
    # unknown kids do not hammer the provider: at most one refetch per interval
    before = provider.hits
    for _ in range(5):
        await client.get(PREFS, headers=provider.token("k1"))
    assert provider.hits == before
