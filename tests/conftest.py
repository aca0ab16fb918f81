"""Shared fixtures: real PostgreSQL and a real Kafka-protocol broker, isolated per test."""

from __future__ import annotations

import asyncio
import base64
import os
import secrets
import shutil
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import asyncpg
import httpx
import jwt
import pytest
from pydantic import SecretStr
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from consent.adapters.db import make_engine, make_sessionmaker, migrate
from consent.adapters.kafka import ensure_topics
from consent.api.app import create_app
from consent.settings import Settings
from consent_common.db import plain_url, with_database
from propagator.db import migrate as migrate_propagator
from tests import contracts, infra

ADMIN_KEY = "test-admin-key"
JWT_SECRET = "test-jwt-secret-0123456789abcdef0123"
PROPAGATOR_KEY = "test-propagator-key-0123456789abcdef"


@pytest.fixture(scope="session")
def workdir() -> Iterator[Path]:
    """Outside pytest's rotating basetemp, which a concurrent pytest run may prune."""
    path = Path(tempfile.mkdtemp(prefix="consent-test-"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture(scope="session")
def pg_url(workdir: Path) -> Iterator[str]:
    with infra.postgres(workdir) as url:
        yield plain_url(url)


@pytest.fixture(scope="session")
def kafka_bootstrap(workdir: Path) -> Iterator[str]:
    with infra.kafka(workdir) as bootstrap:
        yield bootstrap


@pytest.fixture(scope="session")
async def template_db(pg_url: str) -> str:
    name = f"consent_tpl_{uuid.uuid4().hex[:8]}"
    conn = await asyncpg.connect(pg_url)
    try:
        await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()
    await migrate(with_database(pg_url, name))
    await migrate_propagator(with_database(pg_url, name))
    return name


@pytest.fixture
async def db_url(pg_url: str, template_db: str) -> AsyncIterator[str]:
    """A fresh, migrated database for each test (cloned from the template)."""
    name = f"consent_t_{uuid.uuid4().hex[:10]}"
    conn = await asyncpg.connect(pg_url)
    try:
        await conn.execute(f'CREATE DATABASE "{name}" TEMPLATE "{template_db}"')
    finally:
        await conn.close()
    url = with_database(pg_url, name)
    yield url
    conn = await asyncpg.connect(url)
    try:
        problems = await contracts.check_outbox(conn)
    finally:
        await conn.close()
    conn = await asyncpg.connect(pg_url)
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await conn.close()
    assert not problems, "events that break their contract:\n" + "\n".join(problems[:20])


@pytest.fixture
def propagator_api(db_url: str) -> Iterator[str]:
    """The propagator's own HTTP API on the test database (deliveries, parked records), which
    the consent API's admin endpoints forward to. Served in its own thread and event loop,
    so a test that blocks its loop (synchronous HTTP calls) still gets answers."""
    import threading

    from consent_common.settings import CommonSettings
    from consentctl.embedded import free_port
    from consentctl.servers import http_server
    from propagator.api import create_api

    port = free_port()
    own = CommonSettings(database_url=db_url, propagator_api_key=SecretStr(PROPAGATOR_KEY))
    server = http_server(create_api(own), "127.0.0.1", port)
    thread = threading.Thread(target=lambda: asyncio.run(server.serve()), daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started and thread.is_alive() and time.monotonic() < deadline:
        time.sleep(0.01)
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    thread.join(10)


@pytest.fixture
def settings(db_url: str, kafka_bootstrap: str, tmp_path: Path, propagator_api: str) -> Settings:
    return Settings(
        database_url=db_url,
        propagator_url=propagator_api,
        propagator_api_key=SecretStr(PROPAGATOR_KEY),
        kafka_bootstrap=kafka_bootstrap,
        topic_prefix=f"t{uuid.uuid4().hex[:8]}.",
        dev_admin_key=SecretStr(ADMIN_KEY),
        jwt_secret=SecretStr(JWT_SECRET),
        data_dir=tmp_path / "data",
        relay_poll_interval_s=0.2,
        scheduler_interval_s=0.5,
    ).as_dev_stack()  # the tests accept the dev admin key, as `consentctl dev` does


@pytest.fixture
async def topics(settings: Settings) -> Settings:
    await ensure_topics(settings, partitions=3)
    return settings


@pytest.fixture
async def engines(settings: Settings) -> AsyncIterator[list[async_sessionmaker[AsyncSession]]]:
    """Two "replicas": separate engines and pools on the test database (schedulers racing)."""
    made = [make_engine(settings.database_url or "", pool_size=4) for _ in range(2)]
    yield [make_sessionmaker(e) for e in made]
    for e in made:
        await e.dispose()


@pytest.fixture
async def db(db_url: str) -> AsyncIterator[asyncpg.Connection]:
    """A superuser's look at the whole database: both services' schemas."""
    conn = await asyncpg.connect(db_url, server_settings={"search_path": "public, propagator"})
    yield conn
    await conn.close()


@pytest.fixture
async def client(settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://api") as c:
            yield c


def admin() -> dict[str, str]:
    return {"X-API-Key": ADMIN_KEY}


def user(subject_id: str, ttl: int = 600) -> dict[str, str]:
    token = jwt.encode({"sub": subject_id, "exp": int(time.time()) + ttl}, JWT_SECRET, "HS256")
    return {"Authorization": f"Bearer {token}"}


def webhook_secret() -> str:
    return "whsec_" + base64.b64encode(secrets.token_bytes(24)).decode()


@pytest.fixture
def processor_secrets(monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    values = {}
    for name in ("email", "payment", "logistics"):
        env = f"TEST_{name.upper()}_SECRET"
        values[name] = webhook_secret()
        monkeypatch.setenv(env, values[name])
    return values


async def eventually(check, timeout: float = 10.0, interval: float = 0.05):  # type: ignore[no-untyped-def]
    """Poll ``check`` (sync or async) until it returns a truthy value."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = check()
        if asyncio.iscoroutine(last):
            last = await last
        if last:
            return last
        await asyncio.sleep(interval)
    raise AssertionError(f"condition not met within {timeout}s (last value: {last!r})")


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    browser = __import__("sys").modules.get("tests.test_preference_center")
    if browser is not None and browser.WRITTEN:
        terminalreporter.write_line(
            f"preference center screenshots ({len(browser.WRITTEN)}): {browser.ARTIFACTS}"
        )
    boundaries = __import__("sys").modules.get("tests.test_service_boundaries")
    for line in getattr(boundaries, "STALENESS", []):
        terminalreporter.write_line(line)
    if contracts.SEEN:
        seen = ", ".join(f"{t} x{n}" for t, n in sorted(contracts.SEEN.items()))
        terminalreporter.write_line(f"event contracts validated: {seen}")


os.environ.setdefault("XDG_RUNTIME_DIR", "/tmp")
