"""The decision client: against the real API over HTTP (sync and async, single and batch),
fail-closed on errors, retries on 429/503/409 honouring Retry-After."""

from __future__ import annotations

import asyncio
import json
import time
from email.utils import formatdate

import httpx
import pytest

from consent.api.app import create_app
from consent.settings import Settings
from consent_client import AsyncDecisionClient, DecisionClient, DecisionError, Query
from consent_client.decisions import retry_after
from consentctl.embedded import free_port
from consentctl.servers import http_server, serve_until
from tests.conftest import ADMIN_KEY, admin


@pytest.mark.timeout(60)
async def test_against_the_real_api(settings: Settings) -> None:
    port = free_port()
    server = http_server(create_app(settings), "127.0.0.1", port)
    stop = asyncio.Event()
    task = asyncio.create_task(serve_until(server, stop))
    url = f"http://127.0.0.1:{port}"
    try:
        while not server.started:
            await asyncio.sleep(0.02)
        async with httpx.AsyncClient(base_url=url) as http:
            r = await http.patch(
                "/v1/subjects/dc-1/preferences",
                headers=admin(),
                json={"purposes": {"analytics": "granted", "sale": "denied"}},
            )
            assert r.status_code == 200
            seq = r.json()["sequence"]
        async with AsyncDecisionClient(url, api_key=ADMIN_KEY) as c:
            d = await c.decide("dc-1", "analytics", min_sequence=seq)
            assert (d.allowed, d.reason, d.error) == (True, "explicit_grant", None)
            assert await c.allowed("dc-1", "sale") is False
            answers = await c.batch([("dc-1", "analytics"), ("dc-1", "sale"), ("dc-2", "sale")])
            assert [a.allowed for a in answers] == [True, False, False]
            assert [a.subject_id for a in answers] == ["dc-1", "dc-1", "dc-2"]
            bad = await c.decide("dc-1", "no_such_purpose")  # 422: fail closed
            assert (bad.allowed, bad.reason) == (False, "error") and "422" in (bad.error or "")

        def sync_calls() -> tuple[bool, list[bool]]:
            with DecisionClient(url, api_key=ADMIN_KEY) as c:
                return c.allowed("dc-1", "analytics"), [
                    a.allowed for a in c.batch([Query("dc-1", "analytics"), ("dc-1", "sale")])
                ]

        assert await asyncio.to_thread(sync_calls) == (True, [True, False])
        wrong = AsyncDecisionClient(url, api_key="not-a-key", fail_closed=False)
        with pytest.raises(DecisionError) as err:
            await wrong.decide("dc-1", "analytics")
        assert err.value.status == 401
        await wrong.aclose()
    finally:
        stop.set()
        await task


def test_fail_closed_when_nothing_answers() -> None:
    url = f"http://127.0.0.1:{free_port()}"
    with DecisionClient(url, timeout=0.5, retries=1) as c:
        d = c.decide("u", "sale")
        assert (d.allowed, d.reason) == (False, "error") and "ConnectError" in (d.error or "")
    with (
        DecisionClient(url, timeout=0.5, retries=0, fail_closed=False) as c,
        pytest.raises(DecisionError),
    ):
        c.decide("u", "sale")


def scripted(*responses: httpx.Response) -> tuple[httpx.MockTransport, list[httpx.Request]]:
    seen: list[httpx.Request] = []
    queue = list(responses)

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return queue.pop(0)

    return httpx.MockTransport(handler), seen


def ok(allowed: bool = True, sequence: int = 4) -> httpx.Response:
    return httpx.Response(
        200,
        json={
            "subject_id": "u",
            "purpose": "sale",
            "allowed": allowed,
            "reason": "explicit_grant",
            "sequence": sequence,
        },
    )


def test_retries_honour_retry_after_then_give_up_closed() -> None:
    transport, seen = scripted(
        httpx.Response(429, headers={"Retry-After": "1"}),
        httpx.Response(503),
        httpx.Response(409, json={"code": "sequence_not_reached"}),
        ok(),
    )
    c = DecisionClient("http://api", transport=transport, retries=3, max_retry_after_s=0.01)
    t0 = time.monotonic()
    d = c.decide("u", "sale", min_sequence=4)
    assert (d.allowed, d.sequence) == (True, 4) and len(seen) == 4
    assert time.monotonic() - t0 < 0.5  # Retry-After capped by max_retry_after_s
    assert seen[0].url.params["min_sequence"] == "4"

    transport, seen = scripted(*[httpx.Response(503)] * 3)
    c = DecisionClient("http://api", transport=transport, retries=2, max_retry_after_s=0.01)
    d = c.decide("u", "sale")
    assert (d.allowed, d.reason) == (False, "error") and "503" in (d.error or "")
    assert len(seen) == 3

    transport, seen = scripted(httpx.Response(403, json={"detail": "no"}), ok())
    assert DecisionClient("http://api", transport=transport).allowed("u", "sale") is False
    assert len(seen) == 1  # a 403 is not retried


def test_retry_after_forms() -> None:
    assert retry_after(httpx.Response(429, headers={"Retry-After": "2"})) == 2.0
    later = formatdate(time.time() + 30, usegmt=True)
    value = retry_after(httpx.Response(429, headers={"Retry-After": later}))
    assert value is not None and 25 < value <= 30
    assert retry_after(httpx.Response(429)) is None


async def test_batch_passes_tokens_and_splits_large_batches() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        items = json.loads(request.content)["items"]
        return httpx.Response(
            200,
            json={
                "items": [
                    {**i, "allowed": i["purpose"] == "analytics", "reason": "r"} for i in items
                ]
            },
        )

    seen: list[httpx.Request] = []

    def recording(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return handler(request)

    async with AsyncDecisionClient("http://api", transport=httpx.MockTransport(recording)) as c:
        qs = [
            Query(f"u{i}", "analytics" if i % 2 else "sale", 7 if i == 0 else None)
            for i in range(2500)
        ]
        answers = await c.batch(qs)
    assert len(seen) == 3 and [len(json.loads(r.content)["items"]) for r in seen] == [
        1000,
        1000,
        500,
    ]
    first = json.loads(seen[0].content)["items"]
    assert first[0] == {"subject_id": "u0", "purpose": "sale", "min_sequence": 7}
    assert "min_sequence" not in first[1]  # sent only where given
    assert [a.allowed for a in answers[:4]] == [False, True, False, True]
    assert answers[2499].subject_id == "u2499"
