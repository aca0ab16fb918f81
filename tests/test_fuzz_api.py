"""schemathesis against the running API (real uvicorn, real PostgreSQL): no input reaches a
5xx, and responses conform to the checked-in OpenAPI document."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from consent.api.app import create_app
from consent.settings import Settings
from consentctl.embedded import free_port
from consentctl.servers import http_server
from tests.conftest import ADMIN_KEY

SCHEMA = Path(__file__).resolve().parent.parent / "schemas" / "openapi.json"
schema = schemathesis.openapi.from_path(SCHEMA)


@pytest.fixture
def api_url(settings: Settings) -> Iterator[str]:
    """The app served by uvicorn in its own thread and event loop."""
    port = free_port()
    server = http_server(
        create_app(settings.model_copy(update={"scheduler_enabled": False})), "127.0.0.1", port
    )
    thread = threading.Thread(target=lambda: asyncio.run(server.serve()), daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.05)
    url = f"http://127.0.0.1:{port}"
    httpx.put(
        f"{url}/v1/subjects/u-1", json={"jurisdiction": "US-CA"}, headers={"X-API-Key": ADMIN_KEY}
    ).raise_for_status()
    yield url
    server.should_exit = True
    thread.join(10)


@schema.parametrize()
@settings(max_examples=30, deadline=None, derandomize=True, suppress_health_check=list(HealthCheck))
def test_no_input_reaches_a_5xx(case, api_url):  # type: ignore[no-untyped-def]
    case.call_and_validate(
        base_url=api_url,
        headers={"X-API-Key": ADMIN_KEY},
        checks=[
            not_a_server_error,
            status_code_conformance,
            content_type_conformance,
            response_schema_conformance,
        ],
    )
