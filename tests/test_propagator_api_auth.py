"""The propagator's HTTP API is never open: every route refuses a missing or wrong key (401)
and, without a configured key, answers 503 whatever is sent. Routes are read from the app,
so a new route is covered the day it is added."""

from __future__ import annotations

import re

import httpx
import pytest
from pydantic import SecretStr

from consent_common.settings import CommonSettings
from propagator.api import create_api
from tests.conftest import PROPAGATOR_KEY

SAMPLE = {"delivery_id": "6f9619ff-8b86-d011-b42d-00c04fc964ff", "parked_id": "1", "name": "email"}


def routes() -> list[tuple[str, str]]:
    app = create_api(CommonSettings(database_url="postgresql://x@127.0.0.1:1/x"))
    out = []
    for template, operations in app.openapi()["paths"].items():
        path = re.sub(r"\{(\w+)\}", lambda m: SAMPLE[m.group(1)], template)
        out += [(method.upper(), path) for method in sorted(operations)]
    return out


@pytest.mark.parametrize(("method", "path"), routes())
async def test_every_route_needs_the_propagators_own_key(method: str, path: str) -> None:
    dead_db = "postgresql://nobody@127.0.0.1:1/none"  # auth comes before any database work
    keyed = create_api(
        CommonSettings(database_url=dead_db, propagator_api_key=SecretStr(PROPAGATOR_KEY))
    )
    closed = create_api(CommonSettings(database_url=dead_db))
    for app, headers, expected in (
        (keyed, {}, 401),
        (keyed, {"X-API-Key": "not-the-key"}, 401),
        (keyed, {"X-API-Key": "test-admin-key"}, 401),  # the consent API's key is not ours
        (closed, {"X-API-Key": PROPAGATOR_KEY}, 503),
    ):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://p") as c:
            r = await c.request(method, path, headers=headers)
        assert r.status_code == expected, (method, path, headers, r.text)


def test_the_route_list_is_not_empty() -> None:
    assert len(routes()) >= 7


def test_every_operation_declares_the_key() -> None:
    """The document tells a client what the routes enforce: the key, on every operation."""
    doc = create_api(CommonSettings(database_url="postgresql://x@127.0.0.1:1/x")).openapi()
    scheme = doc["components"]["securitySchemes"]["PropagatorKey"]
    assert (scheme["type"], scheme["in"], scheme["name"]) == ("apiKey", "header", "X-API-Key")
    for path, operations in doc["paths"].items():
        for method, operation in operations.items():
            assert operation["security"] == [{"PropagatorKey": []}], (method, path)
            names = [p["name"].lower() for p in operation.get("parameters", [])]
            assert "x-api-key" not in names, (method, path)  # a scheme, not a parameter


@pytest.mark.parametrize(("method", "path"), routes())
async def test_the_declared_key_is_enough(propagator_api: str, method: str, path: str) -> None:
    """With the key (and a real database) every route gets past authorization."""
    async with httpx.AsyncClient(base_url=propagator_api) as c:
        r = await c.request(method, path, headers={"X-API-Key": PROPAGATOR_KEY})
    assert r.status_code not in (401, 403, 503) and r.status_code < 500, (method, path, r.text)


@pytest.mark.parametrize(("method", "path"), routes())
async def test_an_empty_configured_key_keeps_the_api_closed(method: str, path: str) -> None:
    """``CONSENT_PROPAGATOR_API_KEY=""`` (a secret left blank, an unset variable substituted)
    is no key: the API stays closed, and an empty ``X-API-Key`` header opens nothing."""
    dead_db = "postgresql://nobody@127.0.0.1:1/none"
    blank = create_api(CommonSettings(database_url=dead_db, propagator_api_key=SecretStr("")))
    transport = httpx.ASGITransport(app=blank)
    async with httpx.AsyncClient(transport=transport, base_url="http://p") as c:
        for headers in ({"X-API-Key": ""}, {}, {"X-API-Key": "anything"}):
            r = await c.request(method, path, headers=headers)
            assert r.status_code == 503, (method, path, headers, r.status_code, r.text)
