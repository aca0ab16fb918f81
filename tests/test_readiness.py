"""The API is ready while its database answers, whatever the broker does: writes wait in the
outbox. The relay's and propagator's readiness still need the broker."""

from __future__ import annotations

import httpx

from consent.api.app import create_app
from consent.settings import Settings
from consentctl.embedded import free_port
from consentctl.serve import health_app
from tests.conftest import admin


async def test_api_stays_ready_and_writes_while_the_broker_is_unreachable(
    settings: Settings,
) -> None:
    down = settings.model_copy(update={"kafka_bootstrap": f"127.0.0.1:{free_port()}"})
    app = create_app(down)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://api") as client:
            r = await client.get("/readyz")
            assert r.status_code == 200, r.text
            assert r.json() == {
                "status": "ready",
                "checks": {"database": True, "broker": False},
            }
            assert "consent_api_broker_reachable 0.0" in (await client.get("/metrics")).text
            patch = await client.patch(
                "/v1/subjects/u-ready/preferences",
                json={"purposes": {"analytics": "granted"}},
                headers=admin(),
            )
            assert patch.status_code == 200, patch.text


async def test_api_is_not_ready_without_its_database(settings: Settings) -> None:
    gone = settings.model_copy(
        update={"database_url": f"postgresql://u:p@127.0.0.1:{free_port()}/nothing"}
    )
    app = create_app(gone)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://api") as client:
            r = await client.get("/readyz")
            assert r.status_code == 503
            assert r.json()["checks"] == {"database": False, "broker": True}


async def test_worker_readiness_still_needs_the_broker(settings: Settings) -> None:
    down = settings.model_copy(update={"kafka_bootstrap": f"127.0.0.1:{free_port()}"})
    transport = httpx.ASGITransport(app=health_app(down))
    async with httpx.AsyncClient(transport=transport, base_url="http://relay") as client:
        r = await client.get("/readyz")
    assert r.status_code == 503
    assert r.json()["checks"] == {"database": True, "broker": False}
