"""Two services that own their data (issue 16): each table has one owner, in its own schema,
with its own migrations."""

from __future__ import annotations

import ast
import asyncio
import re
import time
import uuid
from pathlib import Path

import asyncpg
import pytest

from consent.adapters.db import migrate
from consent.settings import Settings
from consent_common.db import plain_url, with_database
from propagator.db import migrate as migrate_propagator
from tests.conftest import admin, eventually
from tests.support import running_stack, serving

LEGACY_TABLES = {"deliveries", "processor_receipts", "propagator_inbox", "parked_records"}
PROPAGATOR_TABLES = LEGACY_TABLES | {"propagator_outbox", "processor_health"}


async def _tables(conn: asyncpg.Connection, schema: str) -> set[str]:
    rows = await conn.fetch(
        "SELECT table_name FROM information_schema.tables WHERE table_schema = $1", schema
    )
    return {r[0] for r in rows}


async def test_each_service_migrates_its_own_schema_alone(pg_url: str) -> None:
    name = f"consent_own_{uuid.uuid4().hex[:8]}"
    admin = await asyncpg.connect(pg_url)
    await admin.execute(f'CREATE DATABASE "{name}"')
    url = with_database(pg_url, name)
    try:
        await migrate_propagator(url)  # the propagator first, without the consent service
        conn = await asyncpg.connect(plain_url(url))
        try:
            assert await _tables(conn, "propagator") == PROPAGATOR_TABLES | {"alembic_version"}
            assert not await _tables(conn, "public")
            await migrate(url)
            public = await _tables(conn, "public")
            assert "consent_ledger" in public and "outbox" in public
            assert not public & PROPAGATOR_TABLES
            await migrate_propagator(url)  # idempotent
        finally:
            await conn.close()
    finally:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()


async def test_an_existing_install_keeps_its_deliveries(pg_url: str) -> None:
    """Before issue 16 the propagator's tables lived in ``public`` (created by the consent
    service's migrations); its first own migration moves them, rows and all."""
    name = f"consent_old_{uuid.uuid4().hex[:8]}"
    admin = await asyncpg.connect(pg_url)
    await admin.execute(f'CREATE DATABASE "{name}"')
    url = with_database(pg_url, name)
    try:
        await migrate(url)
        await migrate_propagator(url)
        conn = await asyncpg.connect(plain_url(url))
        try:
            # what an install from before issue 16 looks like
            for table in LEGACY_TABLES:
                await conn.execute(f"ALTER TABLE propagator.{table} SET SCHEMA public")
            await conn.execute("DROP SCHEMA propagator CASCADE")
            await conn.execute(
                "INSERT INTO public.processor_receipts VALUES ('email', 'old', 7, 'e-7', now())"
            )
            await migrate_propagator(url)
            assert not await _tables(conn, "public") & PROPAGATOR_TABLES
            row = await conn.fetchrow("SELECT * FROM propagator.processor_receipts")
            assert (row["subject_id"], row["last_delivered_sequence"]) == ("old", 7)
            assert await _tables(conn, "propagator") == PROPAGATOR_TABLES | {"alembic_version"}
        finally:
            await conn.close()
    finally:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()


# --- staleness of receipts in the consent service (issue 16) --------------------------------

STALENESS: list[str] = []  # printed in the terminal summary (conftest)


def _quantile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


@pytest.mark.timeout(180)
async def test_every_receipt_reaches_the_consent_service(
    client, topics: Settings, processor_secrets, db
):
    """A receipt the propagator records reaches ``/propagation`` and the erasure receipts
    through ``consent.receipts.v1`` and the consent service's read model. Measured two ways:
    per receipt, from the propagator's commit to the consent service's projection (one
    database clock), and as a caller sees it, from a processor's answer to ``/propagation``
    showing it. Every receipt must arrive; how fast is a figure, printed in the terminal
    summary beside its bar (1 s at p99), not asserted (a wall-clock limit fails on a loaded
    machine without saying anything about the code)."""
    from tests.test_propagator import configs, trio

    email, payment, logistics = trio(processor_secrets)
    answered: dict[str, float] = {}

    def note(rec) -> int:  # type: ignore[no-untyped-def]
        answered.setdefault(rec.body["subject_id"], time.monotonic())
        return 204

    email.responder = note
    seen: list[float] = []
    subjects = [f"st{i}" for i in range(120)]
    async with (
        serving(email, payment, logistics),
        running_stack(topics, configs(email, payment, logistics)),
    ):
        slots = asyncio.Semaphore(8)

        async def change_and_watch(sid: str) -> None:
            async with slots:
                r = await client.patch(
                    f"/v1/subjects/{sid}/preferences",
                    headers=admin(),
                    json={
                        "purposes": {"marketing_email": "granted", "third_party_sharing": "granted"}
                    },
                )
                assert r.status_code == 200, r.text
                while True:  # poll /propagation as a caller would
                    r = await client.get(f"/v1/subjects/{sid}/propagation", headers=admin())
                    assert r.status_code == 200, r.text
                    rows = [p for p in r.json()["processors"] if p["processor"] == "email"]
                    if rows and rows[0]["last_delivered_sequence"] == 1:
                        seen.append(time.monotonic() - answered[sid])
                        return
                    await asyncio.sleep(0.01)

        await asyncio.wait_for(asyncio.gather(*(change_and_watch(s) for s in subjects)), 120)
        # erasure receipts: the same path
        r = await client.post("/v1/subjects/st0/erasure", headers=admin())
        assert r.status_code == 202
        await eventually(lambda: _erasure_done(client, "st0"), timeout=30, interval=0.01)
    lags = [
        float(r[0])
        for r in await db.fetch(
            "SELECT extract(epoch FROM projected_at - updated_at) FROM propagation_receipts"
        )
    ]
    assert len(lags) >= 3 * len(subjects)  # every processor's receipt for every subject
    assert len(seen) == len(subjects)
    figures = (
        f"receipt staleness (propagator commit → consent read model), {len(lags)} receipts: "
        f"p50 {_quantile(lags, 0.5) * 1000:.0f} ms, p99 {_quantile(lags, 0.99) * 1000:.0f} ms, "
        f"max {max(lags) * 1000:.0f} ms; as a caller sees it (processor answered → "
        f"/propagation shows it), {len(seen)} subjects: p50 {_quantile(seen, 0.5) * 1000:.0f} ms, "
        f"p99 {_quantile(seen, 0.99) * 1000:.0f} ms, max {max(seen) * 1000:.0f} ms "
        f"(bar: 1 s at p99)"
    )
    STALENESS.append(figures)
    print(figures)


async def _erasure_done(client, sid: str):  # type: ignore[no-untyped-def]
    r = await client.get(f"/v1/subjects/{sid}/erasure", headers=admin())
    return r.status_code == 200 and r.json()["status"] == "completed"


# --- no import, no SQL across the boundary (issue 16) ---------------------------------------

SERVICES = Path(__file__).resolve().parents[1] / "services"
CONSENT_PKG = SERVICES / "consent" / "consent"
PROPAGATOR_PKG = SERVICES / "propagator" / "propagator"
COMMON_PKG = SERVICES / "common" / "consent_common"


def _imports(package: Path) -> dict[str, set[str]]:
    """Top-level package of every import, per module."""
    found: dict[str, set[str]] = {}
    for path in package.rglob("*.py"):
        tree = ast.parse(path.read_text(), str(path))
        names: set[str] = set()
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                names |= {a.name.split(".")[0] for a in node.names}
            elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
                names.add(node.module.split(".")[0])
        found[str(path.relative_to(SERVICES))] = names
    return found


def test_no_module_of_one_service_imports_the_other() -> None:
    crossing = [
        (module, sorted(names & forbidden))
        for package, forbidden in (
            (CONSENT_PKG, {"propagator", "consentctl"}),
            (PROPAGATOR_PKG, {"consent", "consentctl"}),
            (COMMON_PKG, {"consent", "propagator", "consentctl"}),
        )
        for module, names in _imports(package).items()
        if names & forbidden
    ]
    assert not crossing, f"imports across the service boundary: {crossing}"


def _tables_created_by(package: Path) -> set[str]:
    """Tables a service's migrations create (its own)."""
    text = "\n".join(p.read_text() for p in (package / "migrations").rglob("*.py"))
    created = set(re.findall(r'create_table\(\s*"(\w+)"', text))
    created |= set(re.findall(r"CREATE TABLE (?:\w+\.)?(\w+)", text))
    return created


def _sql_names(package: Path) -> dict[str, set[str]]:
    """Table names after FROM / JOIN / INTO / UPDATE / TABLE in each module's string
    literals (its SQL), the migrations aside."""
    pattern = re.compile(
        r"\b(?:FROM|JOIN|INTO|UPDATE|TABLE|EXISTS)\s+(?:ONLY\s+)?(?:\w+\.)?\"?(\w+)",
        re.IGNORECASE,
    )
    found: dict[str, set[str]] = {}
    for path in package.rglob("*.py"):
        if "migrations" in path.parts:
            continue
        tree = ast.parse(path.read_text(), str(path))
        for node in ast.walk(tree):
            if isinstance(node, ast.Constant) and isinstance(node.value, str):
                names = set(pattern.findall(node.value))
                if names:
                    found.setdefault(str(path.relative_to(SERVICES)), set()).update(names)
    return found


def test_no_sql_of_one_service_names_a_table_of_the_other() -> None:
    consent_tables = _tables_created_by(CONSENT_PKG)
    propagator_tables = _tables_created_by(PROPAGATOR_PKG)
    assert {"consent_ledger", "outbox", "audit_log", "propagation_receipts"} <= consent_tables
    assert {"deliveries", "processor_receipts", "parked_records"} <= propagator_tables
    assert not consent_tables & propagator_tables, "a table with two owners"
    crossing = [
        (module, sorted(names & theirs))
        for package, theirs in (
            (CONSENT_PKG, propagator_tables),
            (PROPAGATOR_PKG, consent_tables),
        )
        for module, names in _sql_names(package).items()
        if names & theirs
    ]
    assert not crossing, f"SQL naming the other service's tables: {crossing}"
