"""Hostile clients on raw sockets against a real uvicorn server: bodies trickled byte by byte
never hold the in-flight slots (admission happens once the body is here), and each such
client is answered 408 and disconnected when the body deadline passes."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import pytest

from consent.api.app import create_app
from consent.api.client_limit import ClientLimit, client_ip, parse_networks
from consent.settings import Settings
from consentctl.embedded import free_port
from consentctl.servers import http_server, serve_until
from tests.conftest import admin
from tests.test_admission import HeldApp

HALF_SENT = (
    b"POST /v1/decisions:batch HTTP/1.1\r\nHost: api\r\nContent-Type: application/json\r\n"
    b"Content-Length: 60000\r\n\r\n{"
)


@pytest.mark.timeout(60)
async def test_seventy_trickling_clients_do_not_take_the_api_down(settings: Settings) -> None:
    port = free_port()
    app = create_app(settings.model_copy(update={"body_timeout_s": 3.0, "max_in_flight": 64}))
    server, stop = http_server(app, "127.0.0.1", port), asyncio.Event()
    serving = asyncio.create_task(serve_until(server, stop))
    try:
        while not server.started:
            await asyncio.sleep(0.02)
        slow = []
        for _ in range(80):  # more than the 64 in-flight slots
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(HALF_SENT)
            slow.append((reader, writer))
        await asyncio.sleep(0.5)
        for _, writer in slow:  # a byte now and then, as the attacker does
            writer.write(b" ")
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as client:
            for _ in range(5):
                r = await client.post(
                    "/v1/decisions:batch",
                    json={"items": [{"subject_id": "u-1", "purpose": "sale"}]},
                    headers=admin(),
                )
                assert r.status_code == 200, r.text
            assert (await client.get("/v1/purposes")).status_code == 200
        for reader, writer in slow:  # read() returns at EOF: the server hung up
            answer = await asyncio.wait_for(reader.read(), 15)
            assert answer.startswith(b"HTTP/1.1 408 "), answer[:80]
            assert b"application/problem+json" in answer and b'"body_timeout"' in answer
            writer.close()
    finally:
        stop.set()
        await serving


async def _call(app: Any, client: str, forwarded: str | None = None) -> int:
    headers = [(b"x-forwarded-for", forwarded.encode())] if forwarded else []
    scope = {"type": "http", "method": "GET", "path": "/v1/x", "headers": headers,
             "client": (client, 40000)}  # fmt: skip
    status: list[int] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start":
            status.append(message["status"])

    await app(scope, receive, send)
    return status[0]


async def test_per_client_cap_counts_the_client_behind_a_trusted_proxy() -> None:
    inner = HeldApp()
    app = ClientLimit(inner, limit=2, trusted=parse_networks("10.0.0.0/8"))
    held = [asyncio.create_task(_call(app, "10.0.0.5", "203.0.113.7")) for _ in range(2)]
    while inner.entered < 2:
        await asyncio.sleep(0.001)
    assert await _call(app, "10.0.0.5", "203.0.113.7") == 429  # same client, via the proxy
    # another client through the same proxy, and a spoofed hop left of the real client
    others = [
        asyncio.create_task(_call(app, "10.0.0.5", "198.51.100.1")),
        asyncio.create_task(_call(app, "10.0.0.5", "203.0.113.7, 198.51.100.2")),
    ]
    while inner.entered < 4:
        await asyncio.sleep(0.001)
    inner.release.set()
    assert [await t for t in [*held, *others]] == [204] * 4
    assert app.active == {}


def test_client_address_rule() -> None:
    trusted = parse_networks(["10.0.0.0/8", "fd00::/8"])
    scope = {"client": ("10.1.1.1", 1), "headers": [(b"x-forwarded-for", b"1.1.1.1, 10.2.2.2")]}
    assert client_ip(scope, trusted) == "1.1.1.1"
    scope = {"client": ("192.0.2.1", 1), "headers": [(b"x-forwarded-for", b"1.1.1.1")]}
    assert client_ip(scope, trusted) == "192.0.2.1"  # untrusted peer: its header is ignored
    assert client_ip({"client": ("10.1.1.1", 1), "headers": []}, trusted) == "10.1.1.1"
