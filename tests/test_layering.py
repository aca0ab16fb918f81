"""SQL only in adapters: in the consent service and consentctl, a module outside
``consent/adapters/`` (and the migrations) reaches the database through a repository of the
unit of work (or, for a long-lived connection, an adapter built on ``connect_durable``).
It never imports the ORM tables, never builds a statement with SQLAlchemy's
``select``/``text``/``update``/``delete``/``insert``, and never runs one itself
(``.execute``, ``.executemany``, ``.fetch``, ``.fetchval``, ``.fetchrow``). AST-based: no
database, well under a second."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent / "services"
SCANNED = [ROOT / "consent" / "consent", ROOT / "consentctl" / "consentctl"]
ADAPTERS = ROOT / "consent" / "consent" / "adapters"

TABLES = "consent.adapters.tables"
BUILDERS = {"select", "text", "update", "delete", "insert"}
RUNS = {"execute", "executemany", "fetch", "fetchval", "fetchrow"}

# Where a module may still talk SQL itself, and why. Keep it short: an entry that no longer
# needs its place fails test_the_allow_list_is_not_stale.
ALLOWED = {
    "consentctl/consentctl/db_roles.py": "DDL as the database owner (CREATE ROLE, GRANT, "
    "ALTER ... OWNER) before any migration, for a service's schema: administration of the "
    "database itself, not access to the service's tables, and no repository could own it",
}


def violations(source: str, name: str = "<source>") -> list[str]:
    """Every table import, statement builder and statement run in ``source``."""
    found = []
    for node in ast.walk(ast.parse(source, name)):
        if isinstance(node, ast.ImportFrom) and node.module:
            imported = {a.name for a in node.names}
            if node.module == TABLES or (
                node.module == "consent.adapters" and "tables" in imported
            ):
                found.append(f"{name}:{node.lineno} imports the ORM tables")
            elif node.module.split(".")[0] in ("sqlalchemy", "sqlmodel") and imported & BUILDERS:
                found.append(f"{name}:{node.lineno} imports {sorted(imported & BUILDERS)}")
        elif isinstance(node, ast.Import):
            if any(a.name == TABLES for a in node.names):
                found.append(f"{name}:{node.lineno} imports the ORM tables")
        elif isinstance(node, ast.Attribute):
            if node.attr in RUNS:
                found.append(f"{name}:{node.lineno} runs .{node.attr}(…)")
            elif (
                node.attr in BUILDERS
                and isinstance(node.value, ast.Name)
                and node.value.id in ("sqlalchemy", "sa", "sqlmodel")
            ):
                found.append(f"{name}:{node.lineno} builds {node.value.id}.{node.attr}")
    return found


def _modules() -> list[Path]:
    return [
        path
        for base in SCANNED
        for path in sorted(base.rglob("*.py"))
        if ADAPTERS not in path.parents and "migrations" not in path.parts
    ]


def _name(path: Path) -> str:
    return str(path.relative_to(ROOT))


def test_sql_lives_only_in_adapters():
    offenders = [
        hit
        for path in _modules()
        if _name(path) not in ALLOWED
        for hit in violations(path.read_text(), _name(path))
    ]
    assert offenders == []


def test_the_allow_list_is_not_stale():
    """Each allowed module exists and still needs its place, and says why."""
    for name, reason in ALLOWED.items():
        path = ROOT / name
        assert path.exists(), name
        assert violations(path.read_text(), name), f"{name} no longer talks SQL: drop it"
        assert len(reason) > 40, name


def test_the_check_sees_every_kind_of_access():
    """The checker itself: each form it forbids is reported, and ordinary code is not."""
    planted = """
from consent.adapters.tables import ApiKey
from consent.adapters import tables
import consent.adapters.tables
from sqlalchemy import select, text
from sqlmodel import update
import sqlalchemy as sa
q = sa.delete(ApiKey)
async def f(conn, session):
    await conn.execute("DELETE FROM outbox")
    await conn.fetch("SELECT 1")
    await conn.fetchval("SELECT 1")
    await conn.fetchrow("SELECT 1")
    await conn.executemany("SELECT $1", [])
"""
    hits = violations(planted)
    assert len(hits) == 11, hits
    clean = """
from consent.adapters.idempotency import StoredResponse
from sqlalchemy.ext.asyncio import AsyncSession
async def f(uow):
    return await uow.policies.all(), await uow.outbox.backlog()
"""
    assert violations(clean) == []
