"""``consentctl db roles``: least privilege in PostgreSQL, per service.

Each service gets an owner role (owns its schema and tables; migrations run as it) and a
runtime role (what the service connects as). The runtime role reads and writes rows and
nothing more: no TRUNCATE, no ALTER or DROP (it owns nothing, so it cannot drop a
trigger), and on the append-only tables (the ledger, the log, the audit log) no UPDATE or
DELETE, the one exception being the sequencer's ``UPDATE (leaf_index)`` of the ledger,
which the ledger's trigger limits to setting a NULL leaf index.

Run it as a role that may create roles (a DBA), after ``consentctl migrate`` and after
every migration that adds a table (default privileges cover tables the owner creates)."""

from __future__ import annotations

import asyncio
import os
from dataclasses import dataclass
from typing import Annotated

import asyncpg
import typer

db_app = typer.Typer(help="Database roles and privileges.", no_args_is_help=True)


@dataclass(frozen=True)
class ServiceRoles:
    schema: str
    owner: str
    runtime: str
    append_only: tuple[str, ...] = ()
    # (table, column) the runtime may still update on an append-only table
    settable: tuple[tuple[str, str], ...] = ()
    read_only: tuple[str, ...] = ("alembic_version",)  # the migrations' own bookkeeping


CONSENT = ServiceRoles(
    "public",
    "consent_owner",
    "consent_runtime",
    append_only=("consent_ledger", "log_nodes", "log_checkpoints", "audit_log"),
    settable=(("consent_ledger", "leaf_index"),),
)
PROPAGATOR = ServiceRoles("propagator", "propagator_owner", "propagator_runtime")
SERVICES = {"consent": CONSENT, "propagator": PROPAGATOR}


def _q(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


async def _ensure_role(conn: asyncpg.Connection, role: str, password: str | None) -> None:
    exists = await conn.fetchval("SELECT 1 FROM pg_roles WHERE rolname = $1", role)
    if not exists:
        await conn.execute(f"CREATE ROLE {_q(role)} NOLOGIN")
    await conn.execute(f"ALTER ROLE {_q(role)} NOSUPERUSER NOCREATEROLE NOCREATEDB")
    if password:
        await conn.execute(f"ALTER ROLE {_q(role)} LOGIN")
        # utility statements take no parameters: quote the literal with the server's rules
        literal = await conn.fetchval("SELECT quote_literal($1)", password)
        await conn.execute(f"ALTER ROLE {_q(role)} PASSWORD {literal}")


async def apply(
    conn: asyncpg.Connection,
    roles: ServiceRoles,
    owner_password: str | None = None,
    runtime_password: str | None = None,
) -> None:
    """Create (or update) the two roles, give the owner the schema and everything in it,
    and grant the runtime role row access only."""
    s, owner, runtime = _q(roles.schema), _q(roles.owner), _q(roles.runtime)
    await _ensure_role(conn, roles.owner, owner_password)
    await _ensure_role(conn, roles.runtime, runtime_password)
    async with conn.transaction():
        db = await conn.fetchval("SELECT current_database()")
        await conn.execute(f"GRANT CONNECT, TEMPORARY ON DATABASE {_q(db)} TO {owner}, {runtime}")
        await conn.execute(f"ALTER SCHEMA {s} OWNER TO {owner}")
        rows = await conn.fetch(
            "SELECT c.relname, c.relkind FROM pg_class c JOIN pg_namespace n "
            "ON n.oid = c.relnamespace WHERE n.nspname = $1 AND (c.relkind IN ('r','p','v') "
            "OR (c.relkind = 'S' AND NOT EXISTS (SELECT 1 FROM pg_depend d "
            "WHERE d.objid = c.oid AND d.deptype IN ('a', 'i'))))",
            roles.schema,
        )
        for r in rows:
            kind = "SEQUENCE" if r["relkind"] == "S" else "TABLE"
            await conn.execute(f"ALTER {kind} {s}.{_q(r['relname'])} OWNER TO {owner}")
        for fn in await conn.fetch(
            "SELECT p.oid::regprocedure::text AS sig FROM pg_proc p JOIN pg_namespace n "
            "ON n.oid = p.pronamespace WHERE n.nspname = $1",
            roles.schema,
        ):
            await conn.execute(f"ALTER FUNCTION {fn['sig']} OWNER TO {owner}")
        await conn.execute(f"REVOKE CREATE ON SCHEMA {s} FROM PUBLIC, {runtime}")
        await conn.execute(f"GRANT USAGE ON SCHEMA {s} TO {runtime}")
        await conn.execute(f"REVOKE ALL ON ALL TABLES IN SCHEMA {s} FROM {runtime}")
        await conn.execute(
            f"GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA {s} TO {runtime}"
        )
        await conn.execute(f"GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA {s} TO {runtime}")
        for table in roles.append_only:
            await conn.execute(f"REVOKE UPDATE, DELETE ON {s}.{_q(table)} FROM {runtime}")
        for table in roles.read_only:
            if await conn.fetchval("SELECT to_regclass($1)", f"{roles.schema}.{table}"):
                await conn.execute(
                    f"REVOKE INSERT, UPDATE, DELETE ON {s}.{_q(table)} FROM {runtime}"
                )
        for table, column in roles.settable:
            await conn.execute(f"GRANT UPDATE ({_q(column)}) ON {s}.{_q(table)} TO {runtime}")
        # tables later migrations create: the same row access, nothing more
        await conn.execute(
            f"ALTER DEFAULT PRIVILEGES FOR ROLE {owner} IN SCHEMA {s} "
            f"GRANT SELECT, INSERT, UPDATE, DELETE ON TABLES TO {runtime}"
        )
        await conn.execute(
            f"ALTER DEFAULT PRIVILEGES FOR ROLE {owner} IN SCHEMA {s} "
            f"GRANT USAGE, SELECT ON SEQUENCES TO {runtime}"
        )


def apply_all(database_url: str, service: str = "all") -> None:
    """``apply`` for one service or both; passwords from the environment (never printed)."""
    from consent_common.db import plain_url

    chosen = list(SERVICES) if service == "all" else [service]

    async def run() -> None:
        conn = await asyncpg.connect(plain_url(database_url))
        try:
            for name in chosen:
                roles, prefix = SERVICES[name], name.upper()
                await apply(
                    conn,
                    roles,
                    os.environ.get(f"{prefix}_OWNER_DB_PASSWORD"),
                    os.environ.get(f"{prefix}_RUNTIME_DB_PASSWORD"),
                )
                typer.echo(
                    f"{name}: schema {roles.schema} owned by {roles.owner}; "
                    f"{roles.runtime} has row access only"
                )
        finally:
            await conn.close()

    asyncio.run(run())


@db_app.command("roles")
def roles_cmd(
    service: Annotated[str, typer.Option(help="consent, propagator or all")] = "all",
) -> None:
    """Create the owner and runtime roles of each service and grant least privilege.

    Passwords come from CONSENT_OWNER_DB_PASSWORD, CONSENT_RUNTIME_DB_PASSWORD,
    PROPAGATOR_OWNER_DB_PASSWORD and PROPAGATOR_RUNTIME_DB_PASSWORD (a new role without one
    cannot log in; an existing role keeps its login); they are never printed."""
    from consentctl.main import _settings
    from consentctl.runtime import resolve_database

    if service not in (*SERVICES, "all"):
        typer.echo("error: --service is consent, propagator or all", err=True)
        raise typer.Exit(2)
    settings, _server = resolve_database(_settings())
    apply_all(settings.database_url or "", service)
