"""The operator's audit of the ledger against everything derived from it (``consentctl
ledger verify``, ``consentctl state rebuild``): bulk reads, and the projection's repair, on
one plain connection the command opens (no pool; the transaction, if any, is the
command's)."""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Sequence
from typing import Any

import asyncpg

from consent.adapters.audit import AuditRecord, write_audit
from consent.adapters.subject_store import UPSERT_STATE, state_rows
from consent.domain.model import PurposeRecord

ENTRIES = """
SELECT l.subject_id, l.sequence, l.type, l.changes::text AS changes, l.detail::text AS detail,
       l.policy_version, l.jurisdiction, l.channel, l.actor_type, l.actor_id, l.occurred_at,
       l.evidence_hash, l.prev_hash, l.hash, l.leaf_index, e.evidence::text AS evidence
FROM consent_ledger l
LEFT JOIN consent_evidence e ON e.subject_id = l.subject_id AND e.sequence = l.sequence
WHERE l.subject_id = ANY($1::text[]) ORDER BY l.subject_id, l.sequence
"""
NEXT_SUBJECTS = """
(SELECT subject_id FROM subjects WHERE subject_id > $1 ORDER BY subject_id LIMIT $2)
UNION
(SELECT DISTINCT subject_id FROM consent_ledger WHERE subject_id > $1
 ORDER BY subject_id LIMIT $2)
ORDER BY subject_id LIMIT $2
"""
HEADS = """
SELECT subject_id, sequence, last_hash, jurisdiction, erased_at, gpc_opted_out_at
FROM subjects WHERE subject_id = ANY($1::text[])
"""
STATES = "SELECT * FROM consent_state WHERE subject_id = ANY($1::text[])"
GUARDIANS = """
SELECT subject_id, guardian_id, revoked_at FROM guardian_links WHERE subject_id = ANY($1::text[])
"""
ALL_STATES = "SELECT subject_id, purpose, status, sequence FROM consent_state FOR UPDATE"
ALL_ENTRIES = """
SELECT subject_id, sequence, type, changes::text AS changes, detail::text AS detail,
       policy_version, channel, actor_type, actor_id, occurred_at
FROM consent_ledger ORDER BY subject_id, sequence
"""
DELETE_STATE = "DELETE FROM consent_state WHERE subject_id = $1 AND purpose = $2"


def _decode(row: asyncpg.Record) -> dict[str, Any]:
    d = dict(row)
    d["changes"] = json.loads(d["changes"]) if d["changes"] else []
    d["detail"] = json.loads(d["detail"]) if d["detail"] else {}
    if "evidence" in d:
        d["evidence"] = json.loads(d["evidence"]) if d["evidence"] else None
    return d


class LedgerAudit:
    def __init__(self, conn: asyncpg.Connection) -> None:
        self.conn = conn

    async def subject_count(self) -> int:
        return int(await self.conn.fetchval("SELECT count(*) FROM subjects"))

    async def next_subjects(self, after: str, limit: int) -> list[str]:
        """Subjects of ``subjects`` or of the ledger (either may lack one), in id order."""
        return [r["subject_id"] for r in await self.conn.fetch(NEXT_SUBJECTS, after, limit)]

    async def entries(self, ids: Sequence[str]) -> dict[str, list[dict[str, Any]]]:
        """Each subject's entries in order, decoded, with ``evidence`` and ``leaf_index``."""
        return {
            sid: [_decode(r) for r in rows] for sid, rows in (await self._by(ENTRIES, ids)).items()
        }

    async def heads(self, ids: Sequence[str]) -> dict[str, asyncpg.Record]:
        return {r["subject_id"]: r for r in await self.conn.fetch(HEADS, list(ids))}

    async def states(self, ids: Sequence[str]) -> dict[str, list[asyncpg.Record]]:
        return await self._by(STATES, ids)

    async def guardians(self, ids: Sequence[str]) -> dict[str, list[asyncpg.Record]]:
        return await self._by(GUARDIANS, ids)

    async def leaves(self) -> dict[int, bytes]:
        """The transparency log's stored leaves, by index."""
        rows = await self.conn.fetch("SELECT idx, hash FROM log_nodes WHERE level = 0")
        return {int(r["idx"]): bytes(r["hash"]) for r in rows}

    async def checkpoint_roots(self) -> dict[int, str]:
        rows = await self.conn.fetch("SELECT tree_size, root_hash FROM log_checkpoints")
        return {int(r["tree_size"]): r["root_hash"] for r in rows}

    async def _by(self, sql: str, ids: Sequence[str]) -> dict[str, list[asyncpg.Record]]:
        out: dict[str, list[asyncpg.Record]] = defaultdict(list)
        for r in await self.conn.fetch(sql, list(ids)):
            out[r["subject_id"]].append(r)
        return out

    # --- state rebuild (inside the command's transaction) -----------------------------
    async def projection_locked(self) -> dict[tuple[str, str], tuple[str, int]]:
        """(subject, purpose) → (status, sequence) of every projection row, locked."""
        rows = await self.conn.fetch(ALL_STATES)
        return {(r["subject_id"], r["purpose"]): (r["status"], r["sequence"]) for r in rows}

    async def all_entries(self) -> dict[str, list[dict[str, Any]]]:
        """Every subject's entries in order, decoded (what ``project`` replays)."""
        by_subject: dict[str, list[dict[str, Any]]] = {}
        for r in await self.conn.fetch(ALL_ENTRIES):
            d = _decode(r)
            by_subject.setdefault(d["subject_id"], []).append(d)
        return by_subject

    async def drop_state(self, subject_id: str, purpose: str) -> None:
        await self.conn.execute(DELETE_STATE, subject_id, purpose)

    async def put_state(self, subject_id: str, record: PurposeRecord) -> None:
        await self.conn.execute(UPSERT_STATE, subject_id, state_rows([record]))

    async def audit(self, record: AuditRecord) -> None:
        await write_audit(self.conn, [record])
