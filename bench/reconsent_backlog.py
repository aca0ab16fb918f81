"""How long a person's own withdrawal waits in the relay while a material policy version
is announced to many subjects, with and without the scheduler's outbox throttle.

    uv run python -m bench.reconsent_backlog [--subjects 20000] [--outage-s 20]

Starts embedded PostgreSQL and the broker and seeds N subjects holding a grant the version
affects. The re-consent job runs in this process while a "person" withdraws a consent every
0.25 s; the relay (``consentctl serve relay``, as production runs it) is down for the first
``--outage-s`` seconds (a broker or relay outage, when a backlog builds) and then starts.
Prints, per run, the rollout rate, the peak backlog and the withdrawals' outbox wait
(commit to published, on the database's clock): the figure the throttle exists for.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import asyncpg

from consent.adapters.db import make_engine, make_sessionmaker, migrate
from consent.adapters.kafka import ensure_topics
from consent.domain.model import Actor
from consent.service import reconsent
from consent.service.context import WriteContext
from consent.service.preferences import change_preferences
from consent.service.unit_of_work import UnitOfWork
from consent.settings import Settings
from consent_common.db import plain_url
from consentctl.embedded import TansuBroker, start_postgres, stop_postgres
from propagator.db import migrate as migrate_propagator

SEED = """
INSERT INTO subjects (subject_id, sequence, jurisdiction)
SELECT 'b-' || i, 1, 'DE' FROM generate_series(1, $1) AS i;
"""
SEED_STATE = """
INSERT INTO consent_state (subject_id, purpose, status, source, sequence, actor_type,
    updated_at)
SELECT 'b-' || i, 'marketing_email', 'granted', 'web', 1, 'subject', now() - interval '1 day'
FROM generate_series(1, $1) AS i;
"""


def start_relay(env: dict[str, str]) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "consentctl.main", "serve", "relay"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


async def one_run(
    env: dict[str, str],
    settings: Settings,
    url: str,
    n: int,
    limit: int,
    label: str,
    outage_s: float,
) -> None:
    conn = await asyncpg.connect(plain_url(url))
    # the ledger refuses TRUNCATE (issue 19's guard); a scratch database's superuser
    # switches the triggers off for the reset
    await conn.execute("SET session_replication_role = replica")
    await conn.execute(
        "TRUNCATE subjects, consent_state, consent_ledger, consent_evidence, outbox CASCADE"
    )
    await conn.execute("SET session_replication_role = origin")
    await conn.execute("DELETE FROM policy_versions")
    await conn.execute(SEED, n)
    await conn.execute(SEED_STATE, n)
    version = f"bench-{label}"
    await conn.execute(
        "INSERT INTO policy_versions (version, effective_at, material, affected_purposes)"
        " VALUES ($1, now(), true, ARRAY['marketing_email'])",
        version,
    )
    tuned = settings.model_copy(
        update={"scheduler_max_outbox_backlog": limit, "scheduler_job_budget_s": 3600.0}
    )
    reconsent.get_settings = lambda: tuned  # type: ignore[assignment]
    engine = make_engine(url, 4)
    sessions = make_sessionmaker(engine)
    done = asyncio.Event()
    ids: list[str] = []
    peak = 0

    async def person() -> None:
        i = 0
        while not done.is_set():
            sid = f"person-{label}-{i}"
            async with sessions() as session:
                uow = UnitOfWork(session)
                ctx = WriteContext("web", Actor("subject", sid))
                await change_preferences(uow, sid, {"marketing_email": "denied"}, ctx)
                await uow.commit()
            i += 1
            ids.append(sid)
            await asyncio.sleep(0.25)

    async def watch() -> None:
        nonlocal peak
        while not done.is_set():
            backlog = await conn.fetchval("SELECT count(*) FROM outbox WHERE published_at IS NULL")
            peak = max(peak, int(backlog))
            print(f"\r  {label}: backlog {backlog:>7}", end="", file=sys.stderr, flush=True)
            await asyncio.sleep(0.5)

    relay: subprocess.Popen[bytes] | None = None
    relay_back: datetime | None = None

    async def relay_after_outage() -> None:
        nonlocal relay, relay_back
        await asyncio.sleep(outage_s)
        relay_back = await conn.fetchval("SELECT clock_timestamp()")
        relay = start_relay(env)

    tasks = [
        asyncio.create_task(person()),
        asyncio.create_task(watch()),
        asyncio.create_task(relay_after_outage()),
    ]
    start = time.perf_counter()
    told = 0
    while True:
        got = await reconsent.announce_reconsent(sessions, datetime.now(UTC) + timedelta(seconds=1))
        told += got
        if await conn.fetchval(
            "SELECT reconsent_done_at IS NOT NULL FROM policy_versions WHERE version = $1", version
        ):
            break
    elapsed = time.perf_counter() - start
    await tasks[2]  # the outage is over, the relay runs
    while await conn.fetchval("SELECT count(*) FROM outbox WHERE published_at IS NULL"):  # noqa: ASYNC110
        await asyncio.sleep(0.2)
    done.set()
    await asyncio.gather(*tasks)
    assert relay is not None
    relay.terminate()
    await asyncio.to_thread(relay.wait, 10)
    rows = await conn.fetch(
        "SELECT extract(epoch FROM published_at - created_at) AS w, created_at > $2 AS after "
        "FROM outbox WHERE aggregateid = ANY($1::text[])",
        ids,
        relay_back,
    )
    print(file=sys.stderr)
    print(
        f"{label:<12} subjects told {told:>7} in {elapsed:6.1f} s ({told / elapsed:5.0f}/s), "
        f"peak backlog {peak:>7}"
    )
    for name, after in (("during the outage", False), ("after it", True)):
        waits = sorted(float(r["w"]) for r in rows if r["after"] is after)
        if not waits:
            continue
        p = lambda q, w=waits: w[min(len(w) - 1, int(q * len(w)))]  # noqa: E731
        print(
            f"    withdrawals {name:<17} {len(waits):>4}: wait in outbox p50 "
            f"{p(0.5) * 1000:7.0f} ms, p95 {p(0.95) * 1000:7.0f} ms, max {waits[-1] * 1000:7.0f} ms"
        )
    await engine.dispose()
    await conn.close()


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--subjects", type=int, default=20_000)
    parser.add_argument("--outage-s", type=float, default=20.0)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="bench-reconsent-"))
    url, server = start_postgres(work / "pg")
    broker = TansuBroker().start()
    bootstrap = broker.bootstrap
    settings = Settings(database_url=url, kafka_bootstrap=bootstrap, topic_prefix="bench.")
    await migrate(url)
    await migrate_propagator(url)
    await ensure_topics(settings, partitions=6)
    env = {
        **os.environ,
        "CONSENT_DATABASE_URL": url,
        "CONSENT_KAFKA_BOOTSTRAP": bootstrap,
        "CONSENT_TOPIC_PREFIX": "bench.",
        "CONSENT_RELAY_POLL_INTERVAL_S": "0.2",
        "CONSENT_LOG_LEVEL": "WARNING",
    }
    try:
        for limit, label in ((1000, "throttled"), (10**9, "unthrottled")):
            await one_run(env, settings, url, args.subjects, limit, label, args.outage_s)
    finally:
        broker.stop()
        stop_postgres(server)


if __name__ == "__main__":
    asyncio.run(main())
