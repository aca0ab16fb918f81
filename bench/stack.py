"""The system under test, started the way production runs it: one process per service.

PostgreSQL and the broker are the embedded defaults unless ``CONSENT_DATABASE_URL`` /
``CONSENT_KAFKA_BOOTSTRAP`` are set. The API (one uvicorn worker), relay and propagator run
as ``consentctl serve …`` subprocesses; a sink processor and the ceiling app run beside them.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import os
import secrets
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
import psutil
import yaml

from consent.adapters.db import migrate
from consent.adapters.kafka import ensure_topics
from consent.api.auth import hash_key
from consent.settings import Settings
from consent_common.db import plain_url
from consentctl.embedded import TansuBroker, free_port, start_postgres, stop_postgres
from propagator.db import migrate as migrate_propagator

REPO = Path(__file__).resolve().parent.parent
PY = sys.executable
SERVICES = ("api", "relay", "propagator", "sink", "ceiling")


@dataclass
class Stack:
    run_dir: Path
    database_url: str
    bootstrap: str
    prefix: str
    admin_key: str
    api: str
    sink: str
    ceiling: str
    env: dict[str, str]
    procs: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    pg_server: Any = None
    broker: TansuBroker | None = None

    def pids(self) -> dict[str, list[int]]:
        """Service name → pids to sample (PostgreSQL: the postmaster and its children)."""
        out = {n: [p.pid] for n, p in self.procs.items() if p.poll() is None}
        if self.broker and self.broker.process:
            out["tansu"] = [self.broker.process.pid]
        if self.pg_server is not None:
            with contextlib.suppress(Exception):
                root = psutil.Process(self.pg_server.get_pid())
                out["postgres"] = [root.pid, *(c.pid for c in root.children(recursive=True))]
        return out


def _spawn(name: str, args: list[str], env: dict[str, str], run_dir: Path) -> Any:
    log = open(run_dir / f"{name}.log", "ab")  # noqa: SIM115 (owned by the child)
    return subprocess.Popen(
        [PY, *args],
        cwd=REPO,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
    )


async def wait_http(url: str, limit_s: float, proc: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + limit_s
    async with aiohttp.ClientSession() as s:
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise RuntimeError(f"{url}: process exited with {proc.returncode}")
            with contextlib.suppress(aiohttp.ClientError, OSError, asyncio.TimeoutError):
                async with s.get(url, timeout=aiohttp.ClientTimeout(total=2)) as r:
                    if r.status == 200:
                        return
            await asyncio.sleep(0.2)
    raise TimeoutError(f"{url} not ready after {limit_s:.0f}s")


def start(run_dir: Path) -> Stack:
    """PostgreSQL, broker, migrations, topics, then every service; blocks until all answer."""
    pg_server = broker = None
    database_url = os.environ.get("CONSENT_DATABASE_URL")
    if not database_url:
        database_url, pg_server = start_postgres(run_dir / "pg")
    bootstrap = os.environ.get("CONSENT_KAFKA_BOOTSTRAP")
    if not bootstrap:
        broker = TansuBroker(log_path=run_dir / "tansu.log").start()
        bootstrap = broker.bootstrap
    prefix = f"bench{int(time.time())}."
    ports = {n: free_port() for n in (*SERVICES, "relay_health", "propagator_health")}
    admin_key = "bench-" + secrets.token_urlsafe(16)
    secret = "whsec_" + base64.b64encode(secrets.token_bytes(24)).decode()
    processors = run_dir / "processors.yaml"
    processors.write_text(
        yaml.safe_dump(
            {
                "processors": [
                    {
                        "name": "email",
                        "url": f"http://127.0.0.1:{ports['sink']}/consent",
                        "secret_env": "EMAIL_PROCESSOR_SECRET",
                        "purposes": ["marketing_email", "marketing_sms", "marketing_push"],
                    }
                ]
            }
        )
    )
    env = {
        **os.environ,
        "CONSENT_DATABASE_URL": database_url,
        "CONSENT_KAFKA_BOOTSTRAP": bootstrap,
        "CONSENT_TOPIC_PREFIX": prefix,
        # `serve` refuses the dev admin key and published secrets: a real admin key (stored
        # hashed by _prepare) and a random salt
        "CONSENT_IP_HASH_SALT": secrets.token_urlsafe(32),
        "CONSENT_PROCESSORS_FILE": str(processors),
        "CONSENT_DATA_DIR": str(run_dir / "data"),
        # the transparency log's signing key, held outside the database as in production
        "CONSENT_CHECKPOINT_KEY_FILE": str(_checkpoint_key(run_dir)),
        "EMAIL_PROCESSOR_SECRET": secret,
        "PYTHONPATH": str(REPO),
    }
    stack = Stack(
        run_dir=run_dir,
        database_url=database_url,
        bootstrap=bootstrap,
        prefix=prefix,
        admin_key=admin_key,
        api=f"http://127.0.0.1:{ports['api']}",
        sink=f"http://127.0.0.1:{ports['sink']}",
        ceiling=f"http://127.0.0.1:{ports['ceiling']}",
        env=env,
        pg_server=pg_server,
        broker=broker,
    )
    try:
        asyncio.run(_prepare(stack))
        cli = ["-m", "consentctl.main", "serve"]
        stack.procs = {
            "api": _spawn(
                "api",
                [*cli, "api", "--host", "127.0.0.1", "--port", str(ports["api"])],
                env,
                run_dir,
            ),
            "relay": _spawn(
                "relay", [*cli, "relay", "--health-port", str(ports["relay_health"])], env, run_dir
            ),
            "propagator": _spawn(
                "propagator",
                [*cli, "propagator", "--health-port", str(ports["propagator_health"])],
                env,
                run_dir,
            ),
            "sink": _spawn(
                "sink", ["-m", "bench.sink", "--port", str(ports["sink"])], env, run_dir
            ),
            "ceiling": _spawn(
                "ceiling", ["-m", "bench.ceilings", "--port", str(ports["ceiling"])], env, run_dir
            ),
        }
        urls = {
            "api": f"{stack.api}/healthz",
            "relay": f"http://127.0.0.1:{ports['relay_health']}/readyz",
            "propagator": f"http://127.0.0.1:{ports['propagator_health']}/readyz",
            "sink": f"{stack.sink}/_stats",
            "ceiling": f"{stack.ceiling}/trivial",
        }

        async def ready() -> None:
            await asyncio.gather(*(wait_http(u, 90, stack.procs[n]) for n, u in urls.items()))

        asyncio.run(ready())
    except BaseException:
        stop(stack)
        raise
    return stack


async def _prepare(stack: Stack) -> None:
    from bench.ceilings import prepare_schema

    settings = Settings(
        database_url=stack.database_url, kafka_bootstrap=stack.bootstrap, topic_prefix=stack.prefix
    )
    await migrate(stack.database_url)
    await migrate_propagator(stack.database_url)
    await ensure_topics(settings)
    conn = await asyncpg.connect(plain_url(stack.database_url))
    try:
        await prepare_schema(conn)
        await conn.execute(
            "INSERT INTO api_keys (id, key_hash, name, scopes) VALUES ($1, $2, 'bench', $3) "
            "ON CONFLICT DO NOTHING",
            "bench",
            hash_key(stack.admin_key),
            ["admin"],
        )
    finally:
        await conn.close()


def stop(stack: Stack) -> None:
    for p in stack.procs.values():
        if p.poll() is None:
            p.terminate()
    for p in stack.procs.values():
        try:
            p.wait(15)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait(5)
    if stack.broker:
        stack.broker.stop()
    if stack.pg_server is not None:
        stop_postgres(stack.pg_server)


async def backlog(database_url: str) -> dict[str, int]:
    conn = await asyncpg.connect(plain_url(database_url))
    try:
        return {
            "outbox": await conn.fetchval("SELECT count(*) FROM outbox WHERE published_at IS NULL"),
            "pending": await conn.fetchval(
                "SELECT count(*) FROM propagator.deliveries WHERE status = 'pending'"
            ),
        }
    finally:
        await conn.close()


async def drain(database_url: str, limit_s: float, settle: float = 1.0) -> dict[str, Any]:
    """Wait until the outbox is published and no delivery is pending (bounded)."""
    start = time.monotonic()
    left: dict[str, int] = {}
    while time.monotonic() - start < limit_s:
        left = await backlog(database_url)
        if not any(left.values()):
            await asyncio.sleep(settle)  # events still between relay, broker and intake
            left = await backlog(database_url)
            if not any(left.values()):
                return {"drained": True, "seconds": round(time.monotonic() - start, 1)}
        await asyncio.sleep(0.5)
    return {"drained": False, "seconds": round(time.monotonic() - start, 1), "left": left}


def _checkpoint_key(run_dir: Path) -> Path:
    from consent.transparency.keys import generate_key_file

    path = run_dir / "checkpoint-key.pem"
    if not path.exists():
        generate_key_file(path)
    return path
