"""CORS for a preference center on another origin, and the metrics operators scrape."""

from __future__ import annotations

import httpx

from consent.api.app import create_app
from consent.settings import Settings
from tests.conftest import admin, user


async def test_cors_allows_only_configured_origins(settings: Settings):
    app = create_app(settings.model_copy(update={"cors_origins": ["https://prefs.example"]}))
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://api") as c:
            preflight = {
                "Access-Control-Request-Method": "PATCH",
                "Access-Control-Request-Headers": "authorization,if-match,sec-gpc",
            }
            r = await c.options(
                "/v1/subjects/u/preferences",
                headers={"Origin": "https://prefs.example", **preflight},
            )
            assert r.status_code == 200
            assert r.headers["access-control-allow-origin"] == "https://prefs.example"
            r = await c.options(
                "/v1/subjects/u/preferences",
                headers={"Origin": "https://evil.example", **preflight},
            )
            assert "access-control-allow-origin" not in r.headers
            r = await c.get(
                "/v1/subjects/u/preferences",
                headers={"Origin": "https://prefs.example", **user("u")},
            )
            assert r.headers["access-control-allow-origin"] == "https://prefs.example"
            assert "ETag" in r.headers["access-control-expose-headers"]


async def test_no_cors_by_default(client):
    r = await client.get("/v1/purposes", headers={"Origin": "https://prefs.example"})
    assert "access-control-allow-origin" not in r.headers


async def test_metrics_show_the_outbox_backlog(client):
    r = await client.patch(
        "/v1/subjects/m/preferences", headers=admin(), json={"purposes": {"analytics": "granted"}}
    )
    assert r.status_code == 200
    metrics = (await client.get("/metrics")).text
    assert "consent_outbox_backlog 1.0" in metrics  # no relay runs in this test
    assert "consent_outbox_oldest_unpublished_seconds" in metrics
