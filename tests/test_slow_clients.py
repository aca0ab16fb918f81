"""Hostile clients on raw sockets against a real uvicorn server: bodies trickled byte by byte
never hold the in-flight slots (admission happens once the body is here), and each such
client is answered 408 and disconnected when the body deadline passes."""

from __future__ import annotations

import asyncio

import httpx
import pytest

from consent.api.app import create_app
from consent.cli.servers import http_server, serve_until
from consent.embedded import free_port
from consent.settings import Settings
from tests.conftest import admin

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
