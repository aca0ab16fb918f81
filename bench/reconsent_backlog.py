"""How long a person's own withdrawal waits in the relay while a material policy version
is announced to many subjects, with and without the scheduler's outbox throttle.

    uv run python -m bench.reconsent_backlog [--subjects 20000]

Starts embedded PostgreSQL and the broker, seeds N subjects holding a grant the version
affects, runs the relay as production does (``consentctl serve relay``) and the re-consent
job in this process, while a "person" withdraws a consent every 0.25 s. Prints, per run,
the rollout rate and the withdrawal's outbox wait (commit to published, from the
database's clock): the figure the throttle exists for.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import asyncpg

from consent.adapters.db import make_engine, make_sessionmaker, migrate, plain_url
from consent.adapters.kafka import ensure_topics
from consent.domain.model import Actor
from consent.embedded import TansuBroker, start_postgres, stop_postgres
from consent.service import reconsent
from consent.service.context import WriteContext
from consent.service.preferences import change_preferences
from consent.service.unit_of_work import UnitOfWork
from consent.settings import Settings

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


async def one_run(settings: Settings, url: str, n: int, limit: int, label: str) -> None:
    conn = await asyncpg.connect(plain_url(url))
    await conn.execute(
        "TRUNCATE subjects, consent_state, consent_ledger, consent_evidence, outbox CASCADE"
    )
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

    tasks = [asyncio.create_task(person()), asyncio.create_task(watch())]
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
    while await conn.fetchval("SELECT count(*) FROM outbox WHERE published_at IS NULL"):  # noqa: ASYNC110
        await asyncio.sleep(0.2)
    done.set()
    await asyncio.gather(*tasks)
    waits = [
        float(r["w"])
        for r in await conn.fetch(
            "SELECT extract(epoch FROM published_at - created_at) AS w FROM outbox "
            "WHERE aggregateid = ANY($1::text[])",
            ids,
        )
    ]
    waits.sort()
    p = lambda q: waits[min(len(waits) - 1, int(q * len(waits)))]  # noqa: E731
    print(file=sys.stderr)
    print(
        f"{label:<12} subjects told {told:>7} in {elapsed:6.1f} s ({told / elapsed:6.0f}/s), "
        f"peak backlog {peak:>7}; withdrawals {len(waits):>4}: wait in outbox "
        f"p50 {p(0.5) * 1000:7.0f} ms, p95 {p(0.95) * 1000:7.0f} ms, max {waits[-1] * 1000:7.0f} ms"
        f" (mean {statistics.mean(waits) * 1000:.0f} ms)"
    )
    await engine.dispose()
    await conn.close()


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--subjects", type=int, default=20_000)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="bench-reconsent-"))
    url, server = start_postgres(work / "pg")
    broker = TansuBroker().start()
    bootstrap = broker.bootstrap
    settings = Settings(database_url=url, kafka_bootstrap=bootstrap, topic_prefix="bench.")
    await migrate(url)
    await ensure_topics(settings, partitions=6)
    env = {
        **os.environ,
        "CONSENT_DATABASE_URL": url,
        "CONSENT_KAFKA_BOOTSTRAP": bootstrap,
        "CONSENT_TOPIC_PREFIX": "bench.",
        "CONSENT_RELAY_POLL_INTERVAL_S": "0.2",
        "CONSENT_LOG_LEVEL": "WARNING",
    }
    relay = subprocess.Popen(  # noqa: ASYNC220
        [sys.executable, "-m", "consent.cli.main", "serve", "relay"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        await one_run(settings, url, args.subjects, 1000, "throttled")
        await one_run(settings, url, args.subjects, 10**9, "unthrottled")
    finally:
        relay.terminate()
        relay.wait(10)
        broker.stop()
        stop_postgres(server)


if __name__ == "__main__":
    asyncio.run(main())
