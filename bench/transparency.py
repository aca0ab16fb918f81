"""The transparency log's costs: sequencing and signing a checkpoint, an inclusion proof,
and ``ledger verify`` against published checkpoints, each beside a ceiling measured in
the same run on the same database.

    uv run python -m bench.transparency [--entries 100000] [--proofs 1000]

Starts embedded PostgreSQL, migrates, seeds N valid ledger entries (one per subject), then:

- sequencing + first checkpoint of all N (ceiling: reading the N rows and hashing their
  leaves in this process, with no writes);
- one round after 1,000 more entries (what a round costs in steady state);
- inclusion proofs from the stored subtrees (ceiling: one primary-key read of the entry);
- ``ledger verify`` with the published checkpoints (ceiling: reading every ledger row).
"""

from __future__ import annotations

import argparse
import asyncio
import random
import statistics
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import asyncpg
import orjson

from consent.adapters.db import driver, make_engine, make_sessionmaker, migrate
from consent.domain.hashing import GENESIS, evidence_hash
from consent.domain.ledger import ChainedEntry
from consent.transparency import proofs
from consent.transparency.keys import generate_key_file, published_jwks
from consent.transparency.log import LEDGER_FIELDS, decode_entry, run_once
from consent_common.db import plain_url
from consentctl.embedded import start_postgres, stop_postgres
from consentctl.ledger import verify_all

COLUMNS = (
    "subject_id", "sequence", "type", "changes", "detail", "policy_version", "jurisdiction",
    "channel", "actor_type", "actor_id", "occurred_at", "evidence_hash", "prev_hash", "hash",
)  # fmt: skip


def entries(start: int, n: int) -> list[tuple[object, ...]]:
    t0 = datetime(2026, 1, 1, tzinfo=UTC)
    ev = evidence_hash({})
    out = []
    for i in range(start, start + n):
        fields = {
            "subject_id": f"s-{i}", "sequence": 1, "type": "consent.changed",
            "changes": [{"purpose": "analytics", "from": "unset", "to": "granted"}],
            "detail": {}, "policy_version": "2026-01", "jurisdiction": "DE",
            "channel": "web", "actor_type": "subject", "actor_id": f"s-{i}",
            "occurred_at": t0 + timedelta(seconds=i),
        }  # fmt: skip
        digest = ChainedEntry(fields, GENESIS, ev).hash()
        out.append(
            (
                *(fields[c] for c in COLUMNS[:3]),
                orjson.dumps(fields["changes"]).decode(),
                "{}",
                *(fields[c] for c in COLUMNS[5:11]),
                ev,
                GENESIS,
                digest,
            )
        )
    return out


async def seed(conn: asyncpg.Connection, start: int, n: int) -> None:
    rows = entries(start, n)
    await conn.executemany(
        f"INSERT INTO consent_ledger ({', '.join(COLUMNS)}) VALUES "
        f"({', '.join(f'${i}' + ('::jsonb' if c in ('changes', 'detail') else '') for i, c in enumerate(COLUMNS, 1))})",  # noqa: E501
        rows,
    )
    await conn.executemany(
        "INSERT INTO subjects (subject_id, sequence, jurisdiction, last_hash) "
        "VALUES ($1, 1, 'DE', $2)",
        [(r[0], r[-1]) for r in rows],
    )
    await conn.executemany(
        "INSERT INTO consent_state (subject_id, purpose, status, source, sequence, "
        "policy_version, actor_type, actor_id, updated_at) "
        "VALUES ($1, 'analytics', 'granted', 'web', 1, '2026-01', 'subject', $1, $2)",
        [(r[0], r[10]) for r in rows],
    )


def pct(xs: list[float], q: float) -> float:
    return sorted(xs)[min(len(xs) - 1, int(q * len(xs)))]


async def main(n: int, n_proofs: int) -> None:
    work = Path(tempfile.mkdtemp(prefix="bench-log-"))
    url, server = start_postgres(work / "pg")
    try:
        await migrate(url)
        conn = await asyncpg.connect(plain_url(url))
        key = generate_key_file(work / "key.pem")
        engine = make_engine(url, 2)
        sessions = make_sessionmaker(engine)
        t = time.perf_counter()
        await seed(conn, 0, n)
        print(f"seeded {n:,} entries in {time.perf_counter() - t:.1f} s")

        t = time.perf_counter()
        rows = await conn.fetch(f"SELECT {LEDGER_FIELDS} FROM consent_ledger")
        for r in rows:
            ChainedEntry.of(decode_entry(r)).leaf_hash()
        ceiling = time.perf_counter() - t

        async def round_() -> tuple[float, int]:
            t = time.perf_counter()
            async with sessions() as s:
                sequenced, _cp = await run_once(s, key, datetime.now(UTC), wait=True)
                await s.commit()
            return time.perf_counter() - t, sequenced

        took, done = await round_()
        print(
            f"sequence + sign, {done:,} entries: {took:.2f} s ({done / took:,.0f}/s); "
            f"ceiling (read + hash the leaves, no writes): {ceiling:.2f} s ({n / ceiling:,.0f}/s)"
        )
        await seed(conn, n, 1000)
        took, done = await round_()
        print(f"one round after {done:,} new entries: {took * 1000:.0f} ms")

        total = n + 1000
        picks = random.Random(1).sample(range(total), min(n_proofs, total))
        proof_ms, read_ms = [], []
        async with sessions() as s:
            c = await driver(s)
            for i in picks:
                sid = f"s-{i}"
                t = time.perf_counter()
                await proofs.inclusion(c, sid, 1)
                proof_ms.append((time.perf_counter() - t) * 1000)
                t = time.perf_counter()
                await c.fetchrow(
                    "SELECT * FROM consent_ledger WHERE subject_id = $1 AND sequence = 1", sid
                )
                read_ms.append((time.perf_counter() - t) * 1000)
        print(
            f"inclusion proof (tree of {total:,}): median {statistics.median(proof_ms):.2f} ms, "
            f"p99 {pct(proof_ms, 0.99):.2f} ms; ceiling (read the entry): median "
            f"{statistics.median(read_ms):.2f} ms"
        )

        published = [
            dict(r) for r in await conn.fetch("SELECT * FROM log_checkpoints ORDER BY tree_size")
        ]
        t = time.perf_counter()
        await conn.fetch("SELECT * FROM consent_ledger")
        ceiling = time.perf_counter() - t
        t = time.perf_counter()
        _, found = await verify_all(
            url, show_progress=False, published=published, jwks=published_jwks(key, None)
        )
        took = time.perf_counter() - t
        assert not found, found[:3]
        print(
            f"ledger verify + {len(published)} checkpoints, {total:,} entries: {took:.1f} s "
            f"({total / took:,.0f}/s); ceiling (read every ledger row): {ceiling:.2f} s"
        )
        await conn.close()
        await engine.dispose()
    finally:
        stop_postgres(server)


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--entries", type=int, default=100_000)
    parser.add_argument("--proofs", type=int, default=1000)
    args = parser.parse_args()
    asyncio.run(main(args.entries, args.proofs))
