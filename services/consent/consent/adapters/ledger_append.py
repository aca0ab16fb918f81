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
from consent.domain.ledger import CHAINED_FIELDS
from consent.domain.model import PurposeRecord

# the subject columns a change may set (``PendingEntry.profile``), with their SQL types
PROFILE_COLUMNS = (
    ("jurisdiction", "varchar"),
    ("birth_date", "date"),
    ("gpc_opted_out_at", "timestamptz"),
    ("erased_at", "timestamptz"),
)
# the statement's parameters, in order: one value (one change) or one array (many) each
PARAMETERS = (
    ("subject_id", "text"),
    ("sequence", "bigint"),
    ("type", "text"),
    ("changes", "text"),
    ("detail", "text"),
    ("policy_version", "text"),
    ("entry_jurisdiction", "text"),
    ("channel", "text"),
    ("actor_type", "text"),
    ("actor_id", "text"),
    ("occurred_at", "timestamptz"),
    ("evidence_hash", "text"),
    ("prev_hash", "text"),
    ("hash", "text"),
    ("evidence", "text"),
    ("decisions", "text"),
    ("age_check_at", "timestamptz"),
    ("age_status", "text"),
    *(
        (p, t)
        for name, sqltype in PROFILE_COLUMNS
        for p, t in ((f"set_{name}", "bool"), (name, sqltype))
    ),
)
STATES = f"${len(PARAMETERS) + 1}"  # the projection rows of every change: one JSON recordset

APPEND_TEMPLATE = """
WITH change AS ({change}
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
), state AS ({state}
)
UPDATE subjects s SET sequence = c.sequence, last_hash = c.hash, updated_at = now(),
    {profile},
    decisions = c.decisions::jsonb, age_status = c.age_status, age_check_at = c.age_check_at
FROM change c
WHERE s.subject_id = c.subject_id AND s.subject_id = {heads}
"""


def _append_sql(change: str, heads: str) -> str:
    """The statement over ``change`` (its rows); ``heads`` finds the subject rows by index
    (a join on the CTE alone is planned as a scan of every subject)."""
    return APPEND_TEMPLATE.format(
        change=change,
        heads=heads,
        state=STATE_UPSERT.format(subject="r.subject_id", rows=STATES),
        profile=",\n    ".join(
            f"{name} = CASE WHEN c.set_{name} THEN c.{name} ELSE s.{name} END"
            for name, _ in PROFILE_COLUMNS
        ),
    )


# Many changes: the parameters are arrays, one element per change, zipped by unnest.
APPEND_MANY_SQL = _append_sql(
    "\n    SELECT * FROM unnest("
    + ", ".join(f"${i}::{t}[]" for i, (_, t) in enumerate(PARAMETERS, 1))
    + ") AS c("
    + ", ".join(name for name, _ in PARAMETERS)
    + ")",
    "ANY($1::text[])",
)
# One change (the API's hot path): the same statement over single values, which PostgreSQL
# plans and runs a little faster than a one-element unnest.
APPEND_ONE_SQL = _append_sql(
    "\n    SELECT "
    + ", ".join(f"${i}::{t} AS {name}" for i, (name, t) in enumerate(PARAMETERS, 1)),
    "$1::text",
)


@dataclass(frozen=True)
class ChangeRow:
    """One subject's change as written: the chained entry with its hashes (``entry``), the
    evidence, the records it sets, the subject columns it sets and what its event told."""

    entry: Mapping[str, Any]
    evidence: Mapping[str, Any]
    records: Iterable[PurposeRecord]
    profile: Mapping[str, Any]
    told: TellState


# the chained fields (domain/ledger.py, their one definition) and the hashes over them
_ENTRY_COLUMNS = (*CHAINED_FIELDS, "evidence_hash", "prev_hash", "hash")


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
    arguments = append_arguments(changes)
    if len(changes) == 1:
        await conn.execute(APPEND_ONE_SQL, *(a[0] for a in arguments[:-1]), arguments[-1])
    else:
        await conn.execute(APPEND_MANY_SQL, *arguments)
