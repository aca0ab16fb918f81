"""The sequencer and the checkpoints: the ledger as an append-only Merkle tree.

Entries get their ``leaf_index`` after they commit, from one sequencer at a time (a
transaction-scoped advisory lock; a writer never waits for it), in the order the sequencer
finds them, so the tree only ever grows at its right edge. The tree's complete subtrees are
stored (``log_nodes``) as they complete, and each new tree head is signed and published:
a row here, a record on ``consent.checkpoints.v1`` (through the outbox, keyed by tree size)
and a line of ``CONSENT_CHECKPOINT_FILE``."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import asyncpg
import structlog
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from consent.adapters.db import driver
from consent.adapters.repositories import OutboxRepository
from consent.domain import merkle
from consent.domain.events import DomainEvent
from consent.domain.ledger import ChainedEntry
from consent.transparency.keys import SigningKey, b64url
from consent.transparency.verify import checkpoint_bytes
from consent_common.timefmt import rfc3339

log = structlog.get_logger()
SEQUENCER_LOCK_KEY = 0x636F6E73656E7403  # "consent" + 3; relay, scheduler, receipts: 0, 1, 2
MAX_PER_ROUND = 100_000
LEDGER_FIELDS = """subject_id, sequence, type, changes::text AS changes, detail::text AS detail,
    policy_version, jurisdiction, channel, actor_type, actor_id, occurred_at, evidence_hash,
    prev_hash, hash"""


@dataclass(frozen=True)
class Checkpoint:
    tree_size: int
    root_hash: str
    issued_at: str
    key_id: str
    signature: str

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def decode_entry(row: asyncpg.Record | dict[str, Any]) -> dict[str, Any]:
    d = dict(row)
    d["changes"] = json.loads(d["changes"]) if d["changes"] else []
    d["detail"] = json.loads(d["detail"]) if d["detail"] else {}
    return d


async def tree_size(conn: asyncpg.Connection) -> int:
    n = await conn.fetchval("SELECT max(idx) + 1 FROM log_nodes WHERE level = 0")
    return int(n or 0)


async def fetch_nodes(conn: asyncpg.Connection, wanted: set[tuple[int, int]]) -> merkle.NodeLookup:
    rows = await conn.fetch(
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


async def sequence_pending(conn: asyncpg.Connection, batch: int = 5000) -> int:
    """Give the next committed entries their leaf indices and store the subtrees they
    complete; the caller holds the sequencer lock. Returns how many were sequenced."""
    rows = await conn.fetch(
        f"SELECT {LEDGER_FIELDS} FROM consent_ledger WHERE leaf_index IS NULL "
        "ORDER BY recorded_at, subject_id, sequence LIMIT $1",
        batch,
    )
    if not rows:
        return 0
    old = await tree_size(conn)
    new = old + len(rows)
    nodes = {(0, old + i): ChainedEntry.of(decode_entry(r)).leaf_hash() for i, r in enumerate(rows)}
    parents = merkle.parents_to_add(old, new)
    # children completed by earlier batches: at most one left sibling per level
    children = {(level - 1, 2 * i + side) for level, i in parents for side in (0, 1)}
    frontier = children - set(nodes) - set(parents)
    if frontier:
        stored = await fetch_nodes(conn, frontier)
        nodes.update({f: stored(*f) for f in frontier})
    for level, i in parents:
        nodes[(level, i)] = merkle.node_hash(
            nodes[(level - 1, 2 * i)], nodes[(level - 1, 2 * i + 1)]
        )
    await conn.execute(
        "UPDATE consent_ledger l SET leaf_index = v.idx "
        "FROM unnest($1::text[], $2::bigint[], $3::bigint[]) AS v(subject_id, sequence, idx) "
        "WHERE l.subject_id = v.subject_id AND l.sequence = v.sequence",
        [r["subject_id"] for r in rows],
        [r["sequence"] for r in rows],
        list(range(old, new)),
    )
    fresh = [k for k in nodes if k not in frontier]
    await conn.execute(
        "INSERT INTO log_nodes (level, idx, hash) "
        "SELECT * FROM unnest($1::smallint[], $2::bigint[], $3::bytea[])",
        [k[0] for k in fresh],
        [k[1] for k in fresh],
        [nodes[k] for k in fresh],
    )
    return len(rows)


def _row_checkpoint(row: asyncpg.Record | None) -> Checkpoint | None:
    return Checkpoint(**dict(row)) if row is not None else None


async def latest_checkpoint(conn: asyncpg.Connection) -> Checkpoint | None:
    return _row_checkpoint(
        await conn.fetchrow("SELECT * FROM log_checkpoints ORDER BY tree_size DESC LIMIT 1")
    )


async def checkpoint_at(conn: asyncpg.Connection, size: int) -> Checkpoint | None:
    return _row_checkpoint(
        await conn.fetchrow("SELECT * FROM log_checkpoints WHERE tree_size = $1", size)
    )


async def root_at(conn: asyncpg.Connection, size: int) -> bytes:
    if size == 0:
        return merkle.empty_root()
    wanted = merkle.nodes_needed(lambda node: merkle.range_hash(0, size, node))
    return merkle.range_hash(0, size, await fetch_nodes(conn, wanted))


def sign_checkpoint(key: SigningKey, size: int, root: bytes, now: datetime) -> Checkpoint:
    issued = rfc3339(now.astimezone(UTC).replace(microsecond=0))
    message = checkpoint_bytes(key.key_id, size, root.hex(), issued)
    return Checkpoint(size, root.hex(), issued, key.key_id, b64url(key.sign(message)))


async def run_once(
    session: AsyncSession, key: SigningKey, now: datetime, *, wait: bool = False
) -> tuple[int, Checkpoint | None]:
    """Sequence what has committed and sign a checkpoint if the tree grew; inside the
    session's transaction (the caller commits). Returns (entries sequenced, new checkpoint
    or None). Without ``wait``, another sequencer at work means nothing to do now."""
    conn = await driver(session)
    if wait:
        await conn.execute("SELECT pg_advisory_xact_lock($1)", SEQUENCER_LOCK_KEY)
    elif not await conn.fetchval("SELECT pg_try_advisory_xact_lock($1)", SEQUENCER_LOCK_KEY):
        return 0, None
    sequenced = 0
    # a round is bounded, so a checkpoint comes even while writes outpace one round
    while sequenced < MAX_PER_ROUND and (n := await sequence_pending(conn)):
        sequenced += n
    size = await tree_size(conn)
    latest = await latest_checkpoint(conn)
    if size == 0 or (latest is not None and latest.tree_size >= size):
        return sequenced, None
    cp = sign_checkpoint(key, size, await root_at(conn, size), now)
    await conn.execute(
        "INSERT INTO log_checkpoints (tree_size, root_hash, issued_at, key_id, signature) "
        "VALUES ($1, $2, $3, $4, $5)",
        cp.tree_size,
        cp.root_hash,
        cp.issued_at,
        cp.key_id,
        cp.signature,
    )
    await OutboxRepository(session).add(
        [
            DomainEvent(
                "consent.checkpoint",
                str(cp.tree_size),
                cp.tree_size,
                now,
                cp.as_dict(),
                aggregatetype="checkpoint",
            )
        ]
    )
    return sequenced, cp


def append_to_file(path: str | None, cp: Checkpoint) -> None:
    """One JSON line per checkpoint, for an operator to ship to write-once storage."""
    if path:
        with Path(path).open("a") as f:
            f.write(json.dumps(cp.as_dict(), sort_keys=True) + "\n")


async def checkpoint_now(
    sessions: async_sessionmaker[AsyncSession],
    key: SigningKey,
    now: datetime,
    checkpoint_file: str | None = None,
    *,
    wait: bool = False,
) -> tuple[int, Checkpoint | None]:
    from consent.service.unit_of_work import unit_of_work  # (it imports this module)

    async with unit_of_work(sessions) as uow:  # the one transaction owner commits
        sequenced, cp = await run_once(uow.session, key, now, wait=wait)
    if cp is not None:
        append_to_file(checkpoint_file, cp)
        log.info("checkpoint_signed", tree_size=cp.tree_size, sequenced=sequenced)
    return sequenced, cp
