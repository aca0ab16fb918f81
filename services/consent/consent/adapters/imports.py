"""SQL of bulk imports: jobs (``import_jobs``) and imported rows' keys (``import_keys``)."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import orjson
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

REJECTED_KEPT = 100_000  # rejected rows kept with the job (the CLI's report file); the
# API shows the first 1,000 and the count


@dataclass
class ImportJob:
    id: uuid.UUID
    status: str
    format: str
    mapping: str | None
    purpose_map: dict[str, str]
    source_sha256: str
    payload: bytes | None
    created_by: str
    created_at: datetime
    heartbeat_at: datetime | None
    finished_at: datetime | None
    cursor: str | None
    counts: dict[str, int]
    rejected: list[dict[str, Any]]
    error: str | None


class ImportRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def create(
        self,
        job_id: uuid.UUID,
        *,
        fmt: str,
        mapping: str | None,
        purpose_map: dict[str, str],
        sha256: str,
        payload: bytes | None,
        actor: str,
        counts: dict[str, int],
        rejected: list[dict[str, Any]],
    ) -> None:
        await self.session.execute(
            text(
                "INSERT INTO import_jobs (id, status, format, mapping, purpose_map, "
                "source_sha256, payload, created_by, heartbeat_at, counts, rejected) VALUES "
                "(:id, 'running', :fmt, :mapping, CAST(:map AS jsonb), :sha, :payload, :actor, "
                "now(), CAST(:counts AS jsonb), CAST(:rejected AS jsonb))"
            ),
            {
                "id": job_id,
                "fmt": fmt,
                "mapping": mapping,
                "map": orjson.dumps(purpose_map).decode(),
                "sha": sha256,
                "payload": payload,
                "actor": actor,
                "counts": orjson.dumps(counts).decode(),
                "rejected": orjson.dumps(rejected[:REJECTED_KEPT]).decode(),
            },
        )

    async def get(self, job_id: uuid.UUID, *, lock: bool = False) -> ImportJob | None:
        """``lock``: the runner's claim on the job for its transaction; None when another
        runner holds it (SKIP LOCKED), so two replicas never work one job at once."""
        lock_sql = " FOR UPDATE SKIP LOCKED" if lock else ""
        row = (
            await self.session.execute(
                text(f"SELECT * FROM import_jobs WHERE id = :id{lock_sql}"), {"id": job_id}
            )
        ).mappings().first()
        return ImportJob(**dict(row)) if row else None

    async def save(
        self,
        job_id: uuid.UUID,
        *,
        cursor: str | None,
        counts: dict[str, int],
        rejected: Sequence[dict[str, Any]],
        finished: bool,
    ) -> None:
        """Advance a job in the transaction that did the work, so a resume is exact. A
        finished job drops its uploaded payload."""
        await self.session.execute(
            text(
                "UPDATE import_jobs SET cursor = :cursor, heartbeat_at = now(), "
                "counts = CAST(:counts AS jsonb), rejected = CAST(:rejected AS jsonb), "
                "status = CASE WHEN :finished THEN 'completed' ELSE status END, "
                "finished_at = CASE WHEN :finished THEN now() END, "
                "payload = CASE WHEN :finished THEN NULL ELSE payload END "
                "WHERE id = :id"
            ),
            {
                "id": job_id,
                "cursor": cursor,
                "counts": orjson.dumps(counts).decode(),
                "rejected": orjson.dumps(list(rejected)[:REJECTED_KEPT]).decode(),
                "finished": finished,
            },
        )

    async def fail(self, job_id: uuid.UUID, error: str) -> None:
        await self.session.execute(
            text(
                "UPDATE import_jobs SET status = 'failed', error = :e, finished_at = now() "
                "WHERE id = :id"
            ),
            {"id": job_id, "e": error[:500]},
        )

    async def stale(self, before: datetime) -> list[uuid.UUID]:
        """Uploaded jobs whose runner stopped (no heartbeat since ``before``)."""
        rows = await self.session.execute(
            text(
                "SELECT id FROM import_jobs WHERE status = 'running' AND payload IS NOT NULL "
                "AND heartbeat_at < :before ORDER BY created_at"
            ),
            {"before": before},
        )
        return [r[0] for r in rows]

    async def seen(self, keys: Sequence[str]) -> set[str]:
        if not keys:
            return set()
        rows = await self.session.execute(
            text("SELECT idempotency_key FROM import_keys WHERE idempotency_key = ANY(:k)"),
            {"k": list(keys)},
        )
        return {r[0] for r in rows}

    async def create_subjects(self, subject_ids: Sequence[str]) -> None:
        """Subjects seen for the first time get their row (sequence 0), so they can be
        locked like any other."""
        await self.session.execute(
            text(
                "INSERT INTO subjects (subject_id, sequence) "
                "SELECT unnest(CAST(:ids AS text[])), 0 ON CONFLICT DO NOTHING"
            ),
            {"ids": list(subject_ids)},
        )

    async def remember(
        self, job_id: uuid.UUID, settled: Sequence[tuple[str, str, int | None]]
    ) -> None:
        """Keys of rows this run settled (applied or skipped): (key, subject, the change's
        sequence or None)."""
        if not settled:
            return
        await self.session.execute(
            text(
                "INSERT INTO import_keys (idempotency_key, job_id, subject_id, sequence) "
                "SELECT k, :job, s, q FROM unnest(CAST(:keys AS text[]), "
                "CAST(:subjects AS text[]), CAST(:seqs AS bigint[])) AS u(k, s, q) "
                "ON CONFLICT DO NOTHING"
            ),
            {
                "job": job_id,
                "keys": [k for k, _, _ in settled],
                "subjects": [s for _, s, _ in settled],
                "seqs": [q for _, _, q in settled],
            },
        )
