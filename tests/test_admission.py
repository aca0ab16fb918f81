"""Load shedding: past the in-flight limit a request is answered 429 at once, with a problem
document and Retry-After; probes are never shed; the slot is freed when a request ends."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import orjson
from starlette.types import Receive, Scope, Send

from consent.api.admission import AdmissionLimit
from consent.api.app import create_app
from consent.settings import Settings


class HeldApp:
    """An ASGI app whose responses wait until released (requests stay in flight)."""

    def __init__(self) -> None:
        self.release = asyncio.Event()
        self.entered = 0

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        self.entered += 1
        await self.release.wait()
        await send({"type": "http.response.start", "status": 204, "headers": []})
        await send({"type": "http.response.body", "body": b""})


async def call(app: Any, path: str) -> tuple[int, dict[bytes, bytes], bytes]:
    scope = {"type": "http", "method": "GET", "path": path, "headers": []}
    out: dict[str, Any] = {"body": b""}

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start":
            out["status"], out["headers"] = message["status"], dict(message["headers"])
        else:
            out["body"] += message.get("body", b"")

    await app(scope, receive, send)
    return out["status"], out["headers"], out["body"]


async def in_flight(app: Any, inner: HeldApp, path: str, n: int) -> list[asyncio.Task[Any]]:
    """Start ``n`` requests and return once the inner app holds all of them."""
    before = inner.entered
    tasks = [asyncio.create_task(call(app, path)) for _ in range(n)]
    while inner.entered < before + n:
        await asyncio.sleep(0.001)
    return tasks


async def test_requests_past_the_limit_are_shed_with_429_until_a_slot_frees() -> None:
    inner = HeldApp()
    app = AdmissionLimit(inner, limit=2)
    held = await in_flight(app, inner, "/v1/x", 2)

    status, headers, body = await call(app, "/v1/x")
    assert status == 429
    assert headers[b"retry-after"] == b"1"
    assert headers[b"content-type"] == b"application/problem+json"
    doc = orjson.loads(body)
    assert doc["status"] == 429 and doc["code"] == "overloaded"
    assert inner.entered == 2  # the shed request never reached the app

    probe = await in_flight(app, inner, "/readyz", 1)  # probes are not counted or shed

    inner.release.set()
    assert [(await t)[0] for t in [*held, *probe]] == [204, 204, 204]
    assert app.in_flight == 0
    assert (await call(app, "/v1/x"))[0] == 204


async def test_no_limit_when_set_to_zero() -> None:
    inner = HeldApp()
    app = AdmissionLimit(inner, limit=0)
    tasks = await in_flight(app, inner, "/v1/x", 5)
    inner.release.set()
    assert [(await t)[0] for t in tasks] == [204] * 5


async def test_the_api_sheds_at_its_configured_limit(settings: Settings) -> None:
    """Through the real app: with a limit of 1, a request arriving while one is in flight
    gets 429 (the in-flight one is a decision read waiting for the only pooled connection).
    A request still sending its body is not in flight (test_slow_clients.py)."""
    app = create_app(settings.model_copy(update={"max_in_flight": 1, "db_pool_size": 1}))
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://api") as client:
            async with app.state.engine.connect() as held:  # the only connection
                await held.exec_driver_sql("SELECT 1")
                first = asyncio.create_task(
                    client.get(
                        "/v1/subjects/s-1/decisions",
                        params={"purpose": "marketing_email"},
                        headers={"X-API-Key": settings.dev_admin_key.get_secret_value()},
                    )
                )
                await asyncio.sleep(0.3)
                shed = await client.get("/v1/purposes")
            assert shed.status_code == 429
            assert shed.headers["retry-after"] == "1"
            assert (await first).status_code == 200  # it was admitted, then served
            assert (await client.get("/v1/purposes")).status_code == 200


async def test_no_free_database_connection_is_answered_429_not_500(settings: Settings) -> None:
    """Every pooled connection busy past the pool timeout: overloaded, said with 429."""
    app = create_app(settings.model_copy(update={"db_pool_size": 1, "db_pool_timeout_s": 0.3}))
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://api") as client:
            key = {"X-API-Key": settings.dev_admin_key.get_secret_value()}
            for subject in ("s-1", "s-2"):
                if subject == "s-2":  # the key is cached now: the lean path (fast_decisions)
                    r = await client.get(
                        "/v1/subjects/s-warm/decisions",
                        params={"purpose": "analytics"},
                        headers=key,
                    )
                    assert r.status_code == 200 and app.state.keys.get(key["X-API-Key"])
                async with app.state.engine.connect() as held:  # the only connection
                    await held.exec_driver_sql("SELECT 1")
                    r = await client.get(
                        f"/v1/subjects/{subject}/decisions",
                        params={"purpose": "marketing_email"},
                        headers=key,
                    )
                assert r.status_code == 429, r.text
                assert r.headers["retry-after"] == "1"
                assert r.json()["code"] == "overloaded"
