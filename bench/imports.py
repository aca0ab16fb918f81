"""Bulk import throughput against a ceiling from the same run: PostgreSQL ``COPY`` of the
same rows into a plain table (what loading the file costs with no rule, no ledger, no
event).

    uv run python -m bench.imports [--subjects 20000] [--purposes 3] [--chunk 200] [--phases]

Starts embedded PostgreSQL (or uses CONSENT_DATABASE_URL), writes a JSON Lines file of
``subjects x purposes`` rows, then measures: the ceiling (``COPY`` of those rows), and the
import (``service/imports.py``: read and check every row, then one ledger entry, one
projection update and one outbox event per subject, each chunk's changes written by one
statement, idempotency keys, job progress). Prints rows per second for both and the ratio
(issue 24's target: ≥ 25%). ``--phases`` adds the wall time spent in each step (timers
wrapped around the service's and repositories' functions for this run).
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import json
import os
import tempfile
import time
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg

from consent.adapters import repositories
from consent.adapters.db import make_engine, make_sessionmaker, migrate
from consent.adapters.imports import ImportRepository
from consent.service import imports as import_svc
from consent.service import recorder
from consent.service.unit_of_work import UnitOfWork
from consent_common.db import plain_url
from consentctl.embedded import start_postgres, stop_postgres

PURPOSES = ["marketing_email", "analytics", "sale", "personalization", "marketing_sms"]


def make_file(subjects: int, purposes: int) -> bytes:
    start = datetime(2025, 1, 1, tzinfo=UTC)
    lines = []
    for i in range(subjects):
        for j, purpose in enumerate(PURPOSES[:purposes]):
            at = start + timedelta(minutes=i * purposes + j)
            lines.append(
                json.dumps(
                    {
                        "subject_id": f"bench-{i:07d}",
                        "purpose": purpose,
                        "status": "granted" if (i + j) % 3 else "denied",
                        "occurred_at": at.isoformat(),
                        "notice_id": "notice-2025",
                    }
                )
            )
    return ("\n".join(lines) + "\n").encode()


async def ceiling(url: str, data: bytes) -> float:
    """Seconds to COPY the file's rows (already parsed) into a plain table."""
    rows = []
    for line in data.splitlines():
        r = json.loads(line)
        rows.append(
            (
                r["subject_id"],
                r["purpose"],
                r["status"],
                datetime.fromisoformat(r["occurred_at"]),
                r["notice_id"],
            )
        )
    conn = await asyncpg.connect(plain_url(url))
    try:
        await conn.execute(
            "CREATE TEMP TABLE ceiling (subject_id text, purpose text, status text, "
            "occurred_at timestamptz, notice_id text)"
        )
        start = time.perf_counter()
        await conn.copy_records_to_table("ceiling", records=rows)
        return time.perf_counter() - start
    finally:
        await conn.close()


# (owner, function): the steps of an import ``--phases`` times
PHASES: list[tuple[Any, str]] = [
    (import_svc, "read_source"),
    (import_svc, "import_chunk"),
    (import_svc.rules, "plan_subject"),
    (recorder, "build"),
    (repositories.LedgerRepository, "append_changes"),
    (repositories.SubjectRepository, "locked_snapshots"),
    (ImportRepository, "seen"),
    (ImportRepository, "create_subjects"),
    (ImportRepository, "remember"),
    (UnitOfWork, "commit"),
]


def time_phases() -> Counter[str]:
    """Wrap each step of ``PHASES`` in a timer; seconds spent in each, by name."""
    spent: Counter[str] = Counter()
    for owner, name in PHASES:
        original = getattr(owner, name)
        if asyncio.iscoroutinefunction(original):

            async def timed(*a: Any, _f: Any = original, _n: str = name, **k: Any) -> Any:
                start = time.perf_counter()
                try:
                    return await _f(*a, **k)
                finally:
                    spent[_n] += time.perf_counter() - start

        else:

            def timed(*a: Any, _f: Any = original, _n: str = name, **k: Any) -> Any:  # type: ignore[misc]
                start = time.perf_counter()
                try:
                    return _f(*a, **k)
                finally:
                    spent[_n] += time.perf_counter() - start

        setattr(owner, name, functools.wraps(original)(timed))
    return spent


async def run(url: str, subjects: int, purposes: int, chunk: int, phases: bool = False) -> None:
    data = make_file(subjects, purposes)
    rows = subjects * purposes
    spent = time_phases() if phases else None
    print(f"file: {rows:,} rows, {subjects:,} subjects, {len(data) / 1e6:.1f} MB")
    copy_s = await ceiling(url, data)
    engine = make_engine(url, 4)
    sessions = make_sessionmaker(engine)
    try:
        start = time.perf_counter()
        job_id, source = await import_svc.start(
            sessions, data, "jsonl", actor="bench", keep_payload=False
        )
        read_s = time.perf_counter() - start
        assert not source.rejected, source.rejected[:3]
        last = [0.0]

        def progress(done: int, total: int, counts: dict[str, int]) -> None:
            now = time.perf_counter()
            if now - last[0] > 5:
                last[0] = now
                print(f"  {done:,}/{total:,} subjects")

        job = await import_svc.run(sessions, job_id, data, chunk=chunk, on_progress=progress)
        import_s = time.perf_counter() - start
        assert job is not None and job.counts.get("applied") == rows, job and job.counts
    finally:
        await engine.dispose()
    copy_rate, import_rate = rows / copy_s, rows / import_s
    print()
    print(f"{'':28}{'seconds':>10}{'rows/s':>12}")
    print(f"{'ceiling: COPY of the rows':28}{copy_s:>10.2f}{copy_rate:>12,.0f}")
    print(f"{'import (read + record)':28}{import_s:>10.2f}{import_rate:>12,.0f}")
    print(f"{'  of which reading':28}{read_s:>10.2f}")
    print(f"{'  subjects/s':28}{'':>10}{subjects / import_s:>12,.0f}")
    print(f"import / ceiling: {import_rate / copy_rate:.1%} (target >= 25%)")
    if spent is not None:
        print("\nwall time per step (nested: import_chunk includes the steps under it)")
        for name, seconds in spent.most_common():
            print(f"  {name:26}{seconds:>10.2f}")


async def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--subjects", type=int, default=20_000)
    ap.add_argument("--purposes", type=int, default=3, choices=range(1, len(PURPOSES) + 1))
    ap.add_argument("--chunk", type=int, default=import_svc.CHUNK)
    ap.add_argument("--phases", action="store_true", help="time each step too")
    args = ap.parse_args()
    url = os.environ.get("CONSENT_DATABASE_URL")
    server = None
    if url is None:
        url, server = start_postgres(Path(tempfile.mkdtemp(prefix="bench-imports-")) / "pg")
    try:
        await migrate(url)
        await run(url, args.subjects, args.purposes, args.chunk, args.phases)
    finally:
        if server is not None:
            stop_postgres(server)


if __name__ == "__main__":
    asyncio.run(main())
