"""The hot path of reads and writes, one statement each, sent straight to asyncpg.

A subject's snapshot (profile, recorded statuses, active guardians) is one query, optionally
locking the subject row; a change (ledger row, evidence, projection, subject head) is one
statement of data-modifying CTEs (``ledger_append``). Everything else about subjects is in
``repositories``.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import orjson
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from consent.adapters.db import driver
from consent.domain.model import Actor, AgeStatus, PurposeRecord, SubjectSnapshot

SNAPSHOT_SQL = """
SELECT s.subject_id, s.sequence, s.jurisdiction, s.birth_date, s.gpc_opted_out_at,
       s.erased_at, s.last_hash, s.decisions::text AS decisions, s.age_status,
       (SELECT coalesce(json_agg(json_build_object(
            'purpose', c.purpose, 'status', c.status, 'source', c.source,
            'sequence', c.sequence, 'policy_version', c.policy_version,
            'actor_type', c.actor_type, 'actor_id', c.actor_id, 'updated_at', c.updated_at,
            'expires_at', c.expires_at, 'ended_reason', c.ended_reason)), '[]')
        FROM consent_state c WHERE c.subject_id = s.subject_id
          AND ($2::text[] IS NULL OR c.purpose = ANY($2::text[]))
       ) AS states,
       (SELECT coalesce(array_agg(g.guardian_id), '{}') FROM guardian_links g
        WHERE g.subject_id = s.subject_id AND g.revoked_at IS NULL) AS guardians,
       (SELECT a.subject_id FROM subject_aliases a
        WHERE a.alias_id = s.subject_id AND a.unlinked_at IS NULL) AS merged_into
FROM subjects s WHERE s.subject_id = ANY($1::text[])
"""

# The one upsert of the consent_state projection: the write path runs it inside the ledger
# append (ledger_append.py, ``{subject}`` the recordset's own column), ``consentctl state
# rebuild`` alone (UPSERT_STATE, one subject); rows as ``state_rows`` shapes them.
STATE_UPSERT = """
    INSERT INTO consent_state (subject_id, purpose, status, source, sequence, policy_version,
        actor_type, actor_id, updated_at, expires_at, ended_reason)
    SELECT {subject}, r.purpose, r.status, r.source, r.sequence, r.policy_version,
        r.actor_type, r.actor_id, r.updated_at, r.expires_at, r.ended_reason
    FROM jsonb_to_recordset({rows}::text::jsonb) AS r(subject_id text, purpose text,
        status text, source text, sequence bigint, policy_version text, actor_type text,
        actor_id text, updated_at timestamptz, expires_at timestamptz, ended_reason text)
    ON CONFLICT (subject_id, purpose) DO UPDATE SET status = EXCLUDED.status,
        source = EXCLUDED.source, sequence = EXCLUDED.sequence,
        policy_version = EXCLUDED.policy_version, actor_type = EXCLUDED.actor_type,
        actor_id = EXCLUDED.actor_id, updated_at = EXCLUDED.updated_at,
        expires_at = EXCLUDED.expires_at, ended_reason = EXCLUDED.ended_reason
"""
UPSERT_STATE = STATE_UPSERT.format(subject="$1", rows="$2")  # $1 subject id, $2 state_rows


def _dt(value: str | None) -> datetime | None:
    return datetime.fromisoformat(value) if value else None


def _record(d: dict[str, Any]) -> PurposeRecord:
    return PurposeRecord(
        purpose=d["purpose"],
        status=d["status"],
        source=d["source"],
        updated_at=datetime.fromisoformat(d["updated_at"]),
        sequence=int(d["sequence"]),
        policy_version=d["policy_version"],
        expires_at=_dt(d["expires_at"]),
        actor=Actor(d["actor_type"], d["actor_id"]),
        ended_reason=d["ended_reason"],
    )


def _snapshot(row: Any) -> SubjectSnapshot:
    states = row["states"]
    states = states if isinstance(states, list) else orjson.loads(states)
    return SubjectSnapshot(
        subject_id=row["subject_id"],
        sequence=row["sequence"],
        jurisdiction=row["jurisdiction"],
        birth_date=row["birth_date"],
        gpc_opted_out_at=row["gpc_opted_out_at"],
        erased_at=row["erased_at"],
        last_hash=row["last_hash"],
        records={d["purpose"]: _record(d) for d in states},
        guardian_ids=frozenset(row["guardians"] or ()),
        published_decisions=orjson.loads(row["decisions"]) if row["decisions"] else None,
        recorded_age_status=row["age_status"],
        merged_into=row["merged_into"],
    )


LOCK_SQL = text("""
SELECT subject_id FROM subjects WHERE subject_id = ANY(CAST(:ids AS text[]))
ORDER BY subject_id FOR UPDATE
""")


async def load_snapshots(
    session: AsyncSession,
    ids: Sequence[str],
    *,
    for_update: bool = False,
    purposes: Sequence[str] | None = None,
) -> dict[str, SubjectSnapshot]:
    """With ``for_update`` the rows are locked first, in their own statement: under READ
    COMMITTED a statement that waited for a lock still reads other tables as of its start,
    so the snapshot must be read by a later statement to see the previous writer's work.

    ``purposes`` restricts the records read to those purposes (decision reads): such a
    partial snapshot answers decisions on them and is never written from."""
    locked: set[str] | None = None
    if for_update:
        locked = set((await session.execute(LOCK_SQL, {"ids": list(ids)})).scalars())
        if not locked:
            return {}
    conn = await driver(session)
    rows = await conn.fetch(SNAPSHOT_SQL, list(ids), list(purposes) if purposes else None)
    # a row committed after the lock statement ran is not locked: leave it out, so the
    # caller creates-or-locks it again rather than write without the lock
    return {
        row["subject_id"]: _snapshot(row)
        for row in rows
        if locked is None or row["subject_id"] in locked
    }


@dataclass(frozen=True)
class TellState:
    """What a change's event tells about the subject, kept on its row for the next change:
    the decisions (for ``changed_decisions``), the age status and when it may next change
    (for the scheduler, which records a birthday that changes it)."""

    decisions: dict[str, bool]
    age_status: AgeStatus | None
    age_check_at: datetime | None


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value else None


def state_rows(records: Iterable[PurposeRecord]) -> str:
    """Projection rows as the state upsert reads them (a JSON recordset)."""
    return json.dumps(state_dicts(records))


def state_dicts(records: Iterable[PurposeRecord], subject_id: str | None = None) -> list[Any]:
    """The recordset's rows; with ``subject_id``, each names its subject (a chunk's)."""
    return [
        {
            "subject_id": subject_id,
            "purpose": r.purpose,
            "status": r.status,
            "source": r.source,
            "sequence": r.sequence,
            "policy_version": r.policy_version,
            "actor_type": r.actor.type,
            "actor_id": r.actor.id,
            "updated_at": _iso(r.updated_at),
            "expires_at": _iso(r.expires_at),
            "ended_reason": r.ended_reason,
        }
        for r in records
    ]


async def fetch_snapshots(conn: Any, ids: Sequence[str]) -> dict[str, SubjectSnapshot]:
    """Whole snapshots (every recorded purpose) on a raw connection: the decision view's
    read-through, no session or transaction around it."""
    rows = await conn.fetch(SNAPSHOT_SQL, list(ids), None)
    return {row["subject_id"]: _snapshot(row) for row in rows}
