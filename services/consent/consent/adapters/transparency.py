"""The transparency log's tables (``log_nodes``, ``log_checkpoints``, the ledger's
``leaf_index``): every statement the sequencer and the proofs need, on the unit of work's
connection and inside its transaction. The rules (what to sequence, which nodes a proof
needs) live in ``transparency/``."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import asyncpg
from sqlalchemy.ext.asyncio import AsyncSession

from consent.adapters.db import driver
from consent.domain import merkle

SEQUENCER_LOCK_KEY = 0x636F6E73656E7403  # "consent" + 3; relay, scheduler, receipts: 0, 1, 2
LEDGER_FIELDS = """subject_id, sequence, type, changes::text AS changes, detail::text AS detail,
    policy_version, jurisdiction, channel, actor_type, actor_id, occurred_at, evidence_hash,
    prev_hash, hash"""


@dataclass(frozen=True)
class Checkpoint:
    """A signed tree head."""

    tree_size: int
    root_hash: str
    issued_at: str
    key_id: str
    signature: str

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def decode_entry(row: asyncpg.Record | Mapping[str, Any]) -> dict[str, Any]:
    """A ledger row selected with ``LEDGER_FIELDS`` as the dict ``ChainedEntry.of`` reads."""
    d = dict(row)
    d["changes"] = json.loads(d["changes"]) if d["changes"] else []
    d["detail"] = json.loads(d["detail"]) if d["detail"] else {}
    return d


class TransparencyRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def _conn(self) -> asyncpg.Connection:
        return await driver(self.session)

    async def lock_sequencer(self, *, wait: bool) -> bool:
        """The sequencer's transaction-scoped lock; without ``wait``, False when taken."""
        conn = await self._conn()
        if wait:
            await conn.execute("SELECT pg_advisory_xact_lock($1)", SEQUENCER_LOCK_KEY)
            return True
        return bool(await conn.fetchval("SELECT pg_try_advisory_xact_lock($1)", SEQUENCER_LOCK_KEY))

    async def tree_size(self) -> int:
        conn = await self._conn()
        n = await conn.fetchval("SELECT max(idx) + 1 FROM log_nodes WHERE level = 0")
        return int(n or 0)

    async def nodes(self, wanted: set[tuple[int, int]]) -> merkle.NodeLookup:
        """The stored subtrees ``(level, index)`` named; LookupError if one is missing."""
        rows = await (await self._conn()).fetch(
            "SELECT n.level, n.idx, n.hash FROM log_nodes n "
            "JOIN unnest($1::smallint[], $2::bigint[]) AS w(level, idx) "
            "ON n.level = w.level AND n.idx = w.idx",
            [w[0] for w in wanted],
            [w[1] for w in wanted],
        )
        found = {(r["level"], r["idx"]): bytes(r["hash"]) for r in rows}
        if len(found) != len(wanted):
            raise LookupError(f"log_nodes lacks {sorted(wanted - set(found))[:3]}…")
        return lambda level, index: found[(level, index)]

    async def unsequenced(self, limit: int) -> list[dict[str, Any]]:
        """Committed entries without a leaf index yet, in the order they get one."""
        rows = await (await self._conn()).fetch(
            f"SELECT {LEDGER_FIELDS} FROM consent_ledger WHERE leaf_index IS NULL "
            "ORDER BY recorded_at, subject_id, sequence LIMIT $1",
            limit,
        )
        return [decode_entry(r) for r in rows]

    async def assign_leaves(self, entries: Sequence[Mapping[str, Any]], first: int) -> None:
        """Leaf indices ``first``, ``first + 1``, … to ``entries`` in their order."""
        await (await self._conn()).execute(
            "UPDATE consent_ledger l SET leaf_index = v.idx "
            "FROM unnest($1::text[], $2::bigint[], $3::bigint[]) AS v(subject_id, sequence, idx) "
            "WHERE l.subject_id = v.subject_id AND l.sequence = v.sequence",
            [e["subject_id"] for e in entries],
            [e["sequence"] for e in entries],
            list(range(first, first + len(entries))),
        )

    async def add_nodes(self, nodes: Mapping[tuple[int, int], bytes]) -> None:
        await (await self._conn()).execute(
            "INSERT INTO log_nodes (level, idx, hash) "
            "SELECT * FROM unnest($1::smallint[], $2::bigint[], $3::bytea[])",
            [k[0] for k in nodes],
            [k[1] for k in nodes],
            list(nodes.values()),
        )

    async def latest(self) -> Checkpoint | None:
        conn = await self._conn()
        return _checkpoint(
            await conn.fetchrow("SELECT * FROM log_checkpoints ORDER BY tree_size DESC LIMIT 1")
        )

    async def at(self, tree_size: int) -> Checkpoint | None:
        conn = await self._conn()
        return _checkpoint(
            await conn.fetchrow("SELECT * FROM log_checkpoints WHERE tree_size = $1", tree_size)
        )

    async def add_checkpoint(self, cp: Checkpoint) -> None:
        await (await self._conn()).execute(
            "INSERT INTO log_checkpoints (tree_size, root_hash, issued_at, key_id, signature) "
            "VALUES ($1, $2, $3, $4, $5)",
            cp.tree_size,
            cp.root_hash,
            cp.issued_at,
            cp.key_id,
            cp.signature,
        )

    async def entry(self, subject_id: str, sequence: int) -> dict[str, Any] | None:
        """One ledger entry with its ``leaf_index`` (None until sequenced)."""
        row = await (await self._conn()).fetchrow(
            f"SELECT {LEDGER_FIELDS}, leaf_index FROM consent_ledger "
            "WHERE subject_id = $1 AND sequence = $2",
            subject_id,
            sequence,
        )
        return decode_entry(row) if row is not None else None

    async def evidence(self, subject_id: str, sequence: int) -> str | None:
        value: str | None = await (await self._conn()).fetchval(
            "SELECT evidence::text FROM consent_evidence WHERE subject_id = $1 AND sequence = $2",
            subject_id,
            sequence,
        )
        return value


def _checkpoint(row: asyncpg.Record | None) -> Checkpoint | None:
    return Checkpoint(**dict(row)) if row is not None else None
