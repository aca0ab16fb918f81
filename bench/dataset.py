"""Bulk-loaded history for the growth probes: subjects ``b-<n>`` with five ledger entries
each (marketing_email flipped five times, ending granted), their evidence, state rows and
subject rows, recorded 30 days ago (outside any replay window of the run).

The hashes are placeholders (``consentctl ledger verify`` would flag these subjects): the
point is the size of the tables and indexes, not the chain.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from typing import Any

import asyncpg

from bench.driver import Ctx, db, load, log
from bench.stack import drain

PER_SUBJECT = 5
CHUNK = 40_000  # subjects per statement

SUBJECTS = """
INSERT INTO subjects (subject_id, sequence, jurisdiction, last_hash, created_at, updated_at)
SELECT 'b-' || g, 5, 'US-CA', encode(sha256(('h' || g || ':5')::bytea), 'hex'),
       now() - interval '30 days', now() - interval '30 days'
FROM generate_series($1::int, $2::int) g
"""
LEDGER = """
INSERT INTO consent_ledger (subject_id, sequence, type, changes, detail, policy_version,
    jurisdiction, channel, actor_type, actor_id, occurred_at, recorded_at,
    evidence_hash, prev_hash, hash)
SELECT 'b-' || g, s, 'consent.changed',
       jsonb_build_array(jsonb_build_object('purpose', 'marketing_email',
           'from', CASE WHEN s = 1 THEN 'unset' WHEN s % 2 = 0 THEN 'granted' ELSE 'denied' END,
           'to', CASE WHEN s % 2 = 1 THEN 'granted' ELSE 'denied' END)),
       '{}'::jsonb, NULL, 'US-CA', 'web', 'subject', 'b-' || g,
       now() - interval '30 days' + s * interval '1 minute', now() - interval '30 days',
       md5('e' || g || ':' || s) || md5('E' || g || ':' || s),
       md5('p' || g || ':' || s) || md5('P' || g || ':' || s),
       encode(sha256(('h' || g || ':' || s)::bytea), 'hex')
FROM generate_series($1::int, $2::int) g CROSS JOIN generate_series(1, 5) s
"""
EVIDENCE = """
INSERT INTO consent_evidence (subject_id, sequence, evidence, recorded_at)
SELECT 'b-' || g, s,
       jsonb_build_object('ip_hash', md5(g::text) || md5(s::text),
                          'user_agent', 'Mozilla/5.0 (bench)', 'gpc', false),
       now() - interval '30 days'
FROM generate_series($1::int, $2::int) g CROSS JOIN generate_series(1, 5) s
"""
STATE = """
INSERT INTO consent_state (subject_id, purpose, status, source, sequence, actor_type,
    actor_id, updated_at)
SELECT 'b-' || g, 'marketing_email', 'granted', 'web', 5, 'subject', 'b-' || g,
       now() - interval '30 days'
FROM generate_series($1::int, $2::int) g
"""


async def ledger_rows(conn: asyncpg.Connection) -> int:
    return int(await conn.fetchval("SELECT count(*) FROM consent_ledger"))


async def grow_to(conn: asyncpg.Connection, target_rows: int, first: int) -> dict[str, Any]:
    """Add bulk subjects from index ``first`` until the ledger holds ``target_rows`` rows.
    Returns the subject index range added and the time it took."""
    start = time.monotonic()
    have = await ledger_rows(conn)
    count = max(0, -(-(target_rows - have) // PER_SUBJECT))
    lo, hi = first, first + count - 1
    for a in range(lo, hi + 1, CHUNK):
        b = min(hi, a + CHUNK - 1)
        async with conn.transaction():
            for sql in (SUBJECTS, LEDGER, EVIDENCE, STATE):
                await conn.execute(sql, a, b)
    loaded = time.monotonic() - start
    if count:
        await conn.execute(
            "VACUUM (ANALYZE) subjects, consent_ledger, consent_evidence, consent_state"
        )
        with contextlib.suppress(asyncpg.PostgresError):  # needs superuser on external DBs
            await conn.execute("CHECKPOINT")
    return {
        "lo": lo,
        "hi": hi,
        "subjects": count,
        "ledger_rows": await ledger_rows(conn),
        "load_s": round(loaded, 1),
        "total_s": round(time.monotonic() - start, 1),
        "db_bytes": int(await conn.fetchval("SELECT pg_database_size(current_database())")),
    }


def growth(ctx: Ctx, target: int, first: int) -> dict[str, Any]:
    """Grow the ledger to ``target`` rows, then fixed-rate write and decision probes at rates
    well below capacity (so latency is service time, not queueing): writes to bulk subjects
    just added, decisions on any bulk subject."""
    log(f"growth: loading the ledger to {target:,} rows")
    info: dict[str, Any] = db(ctx.stack, grow_to, target, first)
    log(f"  {info}")
    rnd = random.Random(target)
    fresh = [f"b-{i}" for i in rnd.sample(range(info["lo"], info["hi"] + 1), 900)]
    every = [f"b-{rnd.randint(1, info['hi'])}" for _ in range(5000)]
    label = f"{info['ledger_rows']:,} rows"
    asyncio.run(drain(ctx.stack.database_url, 60))
    d = ctx.plan.d
    with ctx.sampler.window(label) as res:
        info["writes"] = load(
            ctx,
            f"{label}: PATCH 25/s",
            scenario="patch",
            mode="open",
            rate=25,
            duration=d(10),
            subjects=fresh,
            status="denied",
        )
        info["decisions"] = load(
            ctx,
            f"{label}: decision 50/s",
            scenario="decision",
            mode="open",
            rate=50,
            duration=d(10),
            subjects=every,
        )
    info["label"], info["resources"] = label, res
    asyncio.run(drain(ctx.stack.database_url, 60))
    return info
