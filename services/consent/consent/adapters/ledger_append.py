"""The ledger append: changes to any number of subjects (ledger rows, evidence, projection
rows, subject heads) in one statement of data-modifying CTEs over arrays, sent straight to
asyncpg.

The recorder (service/recorder.py) numbers, chains and projects each change in Python
first — a subject's chain depends only on its own head — so a chunk of an import is one
round trip instead of one per subject, and a single write is the same statement with one
element. Row triggers (the change feed's ``consent_changes`` notifications, migration 0014)
fire per row as for any insert or update.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import orjson
from sqlalchemy.ext.asyncio import AsyncSession

from consent.adapters.db import driver
from consent.adapters.subject_store import STATE_UPSERT, TellState, state_dicts
from consent.domain.model import PurposeRecord

# the subject columns a change may set (``PendingEntry.profile``), with their SQL types
PROFILE_COLUMNS = (
    ("jurisdiction", "varchar"),
    ("birth_date", "date"),
    ("gpc_opted_out_at", "timestamptz"),
    ("erased_at", "timestamptz"),
)
_SET_PROFILE = ",\n    ".join(
    f"{name} = CASE WHEN c.set_{name} THEN c.{name} ELSE s.{name} END"
    for name, _ in PROFILE_COLUMNS
)
_PROFILE_ARRAYS = ", ".join(
    f"${19 + 2 * i}::bool[], ${20 + 2 * i}::{sqltype}[]"
    for i, (_, sqltype) in enumerate(PROFILE_COLUMNS)
)
_PROFILE_NAMES = ", ".join(f"set_{name}, {name}" for name, _ in PROFILE_COLUMNS)

APPEND_SQL = f"""
WITH change AS (
    SELECT * FROM unnest($1::text[], $2::bigint[], $3::text[], $4::text[], $5::text[],
        $6::text[], $7::text[], $8::text[], $9::text[], $10::text[], $11::timestamptz[],
        $12::text[], $13::text[], $14::text[], $15::text[], $16::text[], $17::timestamptz[],
        $18::text[], {_PROFILE_ARRAYS})
    AS c(subject_id, sequence, type, changes, detail, policy_version, entry_jurisdiction,
        channel, actor_type, actor_id, occurred_at, evidence_hash, prev_hash, hash,
        evidence, decisions, age_check_at, age_status, {_PROFILE_NAMES})
), ledger AS (
    INSERT INTO consent_ledger (subject_id, sequence, type, changes, detail, policy_version,
        jurisdiction, channel, actor_type, actor_id, occurred_at, evidence_hash, prev_hash, hash)
    SELECT subject_id, sequence, type, changes::jsonb, detail::jsonb, policy_version,
        entry_jurisdiction, channel, actor_type, actor_id, occurred_at, evidence_hash, prev_hash,
        hash
    FROM change
), evidence AS (
    INSERT INTO consent_evidence (subject_id, sequence, evidence)
    SELECT subject_id, sequence, evidence::jsonb FROM change
), state AS ({STATE_UPSERT.format(subject="r.subject_id", rows="$27")}
)
UPDATE subjects s SET sequence = c.sequence, last_hash = c.hash, updated_at = now(),
    {_SET_PROFILE},
    decisions = c.decisions::jsonb, age_status = c.age_status, age_check_at = c.age_check_at
FROM change c
WHERE s.subject_id = c.subject_id
"""


@dataclass(frozen=True)
class ChangeRow:
    """One subject's change as written: the chained entry with its hashes (``entry``), the
    evidence, the records it sets, the subject columns it sets and what its event told."""

    entry: Mapping[str, Any]
    evidence: Mapping[str, Any]
    records: Iterable[PurposeRecord]
    profile: Mapping[str, Any]
    told: TellState


_ENTRY_COLUMNS = (
    "subject_id",
    "sequence",
    "type",
    "changes",
    "detail",
    "policy_version",
    "jurisdiction",
    "channel",
    "actor_type",
    "actor_id",
    "occurred_at",
    "evidence_hash",
    "prev_hash",
    "hash",
)


def append_arguments(changes: Sequence[ChangeRow]) -> list[Any]:
    """The statement's arguments: one array per column, one element per change."""
    columns: dict[str, list[Any]] = {name: [] for name in _ENTRY_COLUMNS}
    for c in changes:
        for name in _ENTRY_COLUMNS:
            value = c.entry[name]
            columns[name].append(json.dumps(value) if name in ("changes", "detail") else value)
    profile: list[Any] = []
    for name, _ in PROFILE_COLUMNS:
        profile.append([name in c.profile for c in changes])
        profile.append([c.profile.get(name) for c in changes])
    states = [row for c in changes for row in state_dicts(c.records, c.entry["subject_id"])]
    return [
        *columns.values(),
        [json.dumps(c.evidence, default=str) for c in changes],
        [orjson.dumps(c.told.decisions).decode() for c in changes],
        [c.told.age_check_at for c in changes],
        [c.told.age_status for c in changes],
        *profile,
        json.dumps(states),
    ]


async def append_changes(session: AsyncSession, changes: Sequence[ChangeRow]) -> None:
    """Every change's ledger row, evidence, projection rows and subject head: one statement.
    At most one change per subject (each is chained on the subject's head as read)."""
    if not changes:
        return
    if len({c.entry["subject_id"] for c in changes}) != len(changes):
        raise ValueError("one change per subject in an append")
    conn = await driver(session)
    await conn.execute(APPEND_SQL, *append_arguments(changes))
