"""consent_client's processor helper: signatures (interoperable with the standardwebhooks
package the propagator signs with), dedupe, stale sequences, outcome → status; then the
real propagator delivering to it over HTTP, bare ASGI and FastAPI."""

from __future__ import annotations

import asyncio
import json
import time
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from standardwebhooks.webhooks import Webhook

from consent.settings import Settings
from consent_client import (
    MemoryStore,
    Processor,
    Rejected,
    RetryLater,
    SignatureError,
    SqliteStore,
    WebhookDelivery,
    asgi_app,
    verify,
)
from consent_client.fastapi import webhook_router
from consent_client.processor import sign
from consentctl.embedded import free_port
from consentctl.servers import http_server, serve_until
from propagator.config import ProcessorConfig
from tests.conftest import admin, eventually, webhook_secret
from tests.support import running_stack


def signed(
    secret: str, body: dict[str, Any], msg_id: str = "evt-1", at: float | None = None
) -> tuple[bytes, dict[str, str]]:
    raw = json.dumps(body).encode()
    when = datetime.fromtimestamp(at if at is not None else time.time(), UTC)
    sig = Webhook(secret).sign(msg_id, when, raw.decode())
    return raw, {
        "webhook-id": msg_id,
        "webhook-timestamp": str(int(when.timestamp())),
        "webhook-signature": sig,
    }


def body(sequence: int = 1, subject: str = "u-1", **kw: Any) -> dict[str, Any]:
    return {
        "event_id": "e",
        "type": "consent.changed",
        "subject_id": subject,
        "sequence": sequence,
        "decisions": {"sale": True},
        "occurred_at": "2026-11-22T20:51:31Z",
        "replay": False,
        **kw,
    }


def test_verify_accepts_the_standard_signature_and_refuses_others() -> None:
    secret = webhook_secret()
    raw, h = signed(secret, body())
    verify(secret, raw, h)
    assert sign(secret, h["webhook-id"], int(h["webhook-timestamp"]), raw) == h["webhook-signature"]
    with pytest.raises(SignatureError, match="no webhook-signature matches"):
        verify(webhook_secret(), raw, h)
    with pytest.raises(SignatureError, match="matches"):
        verify(secret, raw + b" ", h)
    with pytest.raises(SignatureError, match="tolerance"):
        verify(secret, raw, h, now=time.time() + 301)
    with pytest.raises(SignatureError, match="missing"):
        verify(secret, raw, {k: v for k, v in h.items() if k != "webhook-signature"})
    # several signatures (key rotation): any one may match
    verify(secret, raw, h | {"webhook-signature": "v1,AAAA " + h["webhook-signature"]})


async def test_outcomes_map_to_statuses() -> None:
    secret = webhook_secret()
    applied: list[WebhookDelivery] = []
    mode: dict[str, Any] = {"raise": None}

    async def handler(d: WebhookDelivery) -> None:
        if mode["raise"] is not None:
            raise mode["raise"]
        applied.append(d)

    p = Processor(secret, handler, store=MemoryStore())

    async def send(b: dict[str, Any], msg_id: str, sec: str = secret) -> int:
        raw, h = signed(sec, b, msg_id)
        return (await p.handle(raw, h)).status

    assert await send(body(2), "a") == 204
    assert await send(body(2), "a") == 200  # the same webhook-id again
    assert await send(body(1), "b") == 200  # older than what was applied
    assert await send(body(2), "c") == 204  # equal sequence, new id (a replay): applied
    assert await send(body(1, repair=True), "d") == 204  # a repair applies anyway
    assert await send(body(3), "e", webhook_secret()) == 401
    raw, h = signed(secret, {"nonsense": 1}, "f")
    assert (await p.handle(raw, h)).status == 400
    mode["raise"] = Rejected("unknown account")
    assert await send(body(4), "g") == 422
    mode["raise"] = RetryLater()
    assert await send(body(5), "h") == 503
    mode["raise"] = RuntimeError("db down")
    assert await send(body(5), "h") == 503
    mode["raise"] = None
    assert await send(body(5), "h") == 204  # the retry succeeds
    assert [d.sequence for d in applied] == [2, 2, 1, 5]
    s = p.stats
    assert (s.applied, s.duplicate, s.stale, s.bad_signature, s.malformed, s.rejected, s.retry) == (
        4,
        1,
        1,
        1,
        1,
        1,
        2,
    )
    assert len(p.store.parked) == 2  # type: ignore[attr-defined]


async def test_concurrent_twins_apply_once(tmp_path) -> None:  # type: ignore[no-untyped-def]
    secret = webhook_secret()
    calls = []

    async def slow(d: WebhookDelivery) -> None:
        calls.append(d)
        await asyncio.sleep(0.05)

    store = SqliteStore(tmp_path / "processor.db")
    p = Processor(secret, slow, store=store)
    raw, h = signed(secret, body(7), "twin")
    outcomes = await asyncio.gather(p.handle(raw, h), p.handle(raw, h))
    assert sorted(o.status for o in outcomes) == [200, 204] and len(calls) == 1
    # a restarted processor with the same file remembers
    again = Processor(secret, slow, store=SqliteStore(tmp_path / "processor.db"))
    assert (await again.handle(raw, h)).result == "duplicate"


@pytest.mark.timeout(120)
async def test_the_propagator_delivers_to_library_processors(client, topics: Settings, monkeypatch):  # type: ignore[no-untyped-def]
    """The real propagator → HTTP → a bare-ASGI processor and a FastAPI one; the first fails
    once (503) and gets the retry; both see each sequence once."""
    secrets = {"email": webhook_secret(), "payment": webhook_secret()}
    monkeypatch.setenv("TEST_EMAIL_SECRET", secrets["email"])
    monkeypatch.setenv("TEST_PAYMENT_SECRET", secrets["payment"])
    got: dict[str, list[WebhookDelivery]] = {"email": [], "payment": []}
    failed_once: list[str] = []

    def email_handler(d: WebhookDelivery) -> None:
        if not failed_once:
            failed_once.append(d.event_id)
            raise RetryLater("warming up")
        got["email"].append(d)

    async def payment_handler(d: WebhookDelivery) -> None:
        got["payment"].append(d)

    email = Processor(secrets["email"], email_handler)
    payment = Processor(secrets["payment"], payment_handler)
    fastapi_app = FastAPI()
    fastapi_app.include_router(webhook_router(payment, "/consent"))
    ports = {"email": free_port(), "payment": free_port()}
    apps = {"email": asgi_app(email, "/consent"), "payment": fastapi_app}
    fast = {"backoff_initial_s": 0.05, "backoff_max_s": 0.2}
    configs = [
        ProcessorConfig(
            name="email",
            url=f"http://127.0.0.1:{ports['email']}/consent",
            secret_env="TEST_EMAIL_SECRET",
            purposes=["marketing_email"],
            **fast,
        ),
        ProcessorConfig(
            name="payment",
            url=f"http://127.0.0.1:{ports['payment']}/consent",
            secret_env="TEST_PAYMENT_SECRET",
            purposes=["sale"],
            events=["consent.changed", "subject.erasure_requested"],
            **fast,
        ),
    ]
    stop = asyncio.Event()
    servers = [http_server(apps[n], "127.0.0.1", ports[n]) for n in ports]
    tasks = [asyncio.create_task(serve_until(s, stop)) for s in servers]
    try:
        await eventually(lambda: all(s.started for s in servers))
        async with running_stack(topics, configs):
            for n, purposes in enumerate(
                (
                    {"marketing_email": "granted", "sale": "denied"},
                    {"marketing_email": "denied", "sale": "granted"},
                ),
                start=1,
            ):
                r = await client.patch(
                    "/v1/subjects/lib-1/preferences", headers=admin(), json={"purposes": purposes}
                )
                assert r.status_code == 200
                await eventually(  # each delivered before the next (else it is superseded)
                    lambda n=n: len(got["payment"]) == n and len(got["email"]) == n, timeout=30
                )
            r = await client.post("/v1/subjects/lib-1/erasure", headers=admin())
            assert r.status_code == 202
            await eventually(lambda: len(got["payment"]) == 3, timeout=30)
            # wrong secret: the processor refuses, the platform is told 401
            async with httpx.AsyncClient() as http:
                raw, h = signed(webhook_secret(), body(9), "forged")
                r = await http.post(configs[1].url, content=raw, headers=h)
                assert r.status_code == 401
    finally:
        stop.set()
        await asyncio.gather(*tasks, return_exceptions=True)
    assert [d.sequence for d in got["email"]][:2] == [1, 2]
    assert [d.decisions for d in got["email"]][:2] == [
        {"marketing_email": True},
        {"marketing_email": False},
    ]
    assert [d.sequence for d in got["payment"]] == [1, 2, 3]
    assert got["payment"][2].is_erasure and got["payment"][2].request_id
    assert email.stats.retry == 1 and email.stats.applied >= 2


async def test_demo_processor_is_built_on_the_library() -> None:
    from propagator.demo import demo_processor_app

    secret = webhook_secret()
    app = demo_processor_app("email", secret)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://demo") as http:

        async def post(b: dict[str, Any], msg_id: str) -> int:
            raw, h = signed(secret, b | {"event_id": msg_id}, msg_id)
            return (await http.post("/consent", content=raw, headers=h)).status_code

        assert await post(body(1), "a") == 204
        assert await post(body(1), "a") == 200
        assert (await http.post("/_control", json={"fail": 503})).status_code == 200
        assert await post(body(2), "b") == 503
        await http.post("/_control", json={"fail": 400})
        assert await post(body(2), "b") == 400
        await http.post("/_control", json={"fail": None})
        assert await post(body(2), "b") == 204
        got = (await http.get("/_received")).json()
    assert got["count"] == 2 and got["duplicates"] == 1
    assert [e["sequence"] for e in got["events"]] == [1, 2]
