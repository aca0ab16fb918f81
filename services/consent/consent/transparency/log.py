"""The sequencer and the checkpoints: the ledger as an append-only Merkle tree.

Entries get their ``leaf_index`` after they commit, from one sequencer at a time (a
transaction-scoped advisory lock; a writer never waits for it), in the order the sequencer
finds them, so the tree only ever grows at its right edge. The tree's complete subtrees are
stored (``log_nodes``) as they complete, and each new tree head is signed and published:
a row here, a record on ``consent.checkpoints.v1`` (through the outbox, keyed by tree size)
and a line of ``CONSENT_CHECKPOINT_FILE``."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import structlog
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from consent.adapters.transparency import (
    LEDGER_FIELDS,
    Checkpoint,
    TransparencyRepository,
    decode_entry,
)
from consent.domain import merkle
from consent.domain.events import DomainEvent
from consent.domain.ledger import ChainedEntry
from consent.service.unit_of_work import UnitOfWork, unit_of_work
from consent.transparency.keys import SigningKey, b64url
from consent.transparency.verify import checkpoint_bytes
from consent_common.timefmt import rfc3339

__all__ = ["LEDGER_FIELDS", "Checkpoint", "checkpoint_now", "decode_entry", "sign_checkpoint"]
log = structlog.get_logger()
MAX_PER_ROUND = 100_000


async def sequence_pending(store: TransparencyRepository, batch: int = 5000) -> int:
    """Give the next committed entries their leaf indices and store the subtrees they
    complete; the caller holds the sequencer lock. Returns how many were sequenced."""
    entries = await store.unsequenced(batch)
    if not entries:
        return 0
    old = await store.tree_size()
    new = old + len(entries)
    nodes = {(0, old + i): ChainedEntry.of(e).leaf_hash() for i, e in enumerate(entries)}
    parents = merkle.parents_to_add(old, new)
    # children completed by earlier batches: at most one left sibling per level
    children = {(level - 1, 2 * i + side) for level, i in parents for side in (0, 1)}
    frontier = children - set(nodes) - set(parents)
    if frontier:
        stored = await store.nodes(frontier)
        nodes.update({f: stored(*f) for f in frontier})
    for level, i in parents:
        nodes[(level, i)] = merkle.node_hash(
            nodes[(level - 1, 2 * i)], nodes[(level - 1, 2 * i + 1)]
        )
    await store.assign_leaves(entries, old)
    await store.add_nodes({k: h for k, h in nodes.items() if k not in frontier})
    return len(entries)


async def root_at(store: TransparencyRepository, size: int) -> bytes:
    if size == 0:
        return merkle.empty_root()
    wanted = merkle.nodes_needed(lambda node: merkle.range_hash(0, size, node))
    return merkle.range_hash(0, size, await store.nodes(wanted))


def sign_checkpoint(key: SigningKey, size: int, root: bytes, now: datetime) -> Checkpoint:
    issued = rfc3339(now.astimezone(UTC).replace(microsecond=0))
    message = checkpoint_bytes(key.key_id, size, root.hex(), issued)
    return Checkpoint(size, root.hex(), issued, key.key_id, b64url(key.sign(message)))


async def run_once(
    uow: UnitOfWork, key: SigningKey, now: datetime, *, wait: bool = False
) -> tuple[int, Checkpoint | None]:
    """Sequence what has committed and sign a checkpoint if the tree grew; inside the unit
    of work's transaction (its owner commits). Returns (entries sequenced, new checkpoint
    or None). Without ``wait``, another sequencer at work means nothing to do now."""
    store = uow.transparency
    if not await store.lock_sequencer(wait=wait):
        return 0, None
    sequenced = 0
    # a round is bounded, so a checkpoint comes even while writes outpace one round
    while sequenced < MAX_PER_ROUND and (n := await sequence_pending(store)):
        sequenced += n
    size = await store.tree_size()
    latest = await store.latest()
    if size == 0 or (latest is not None and latest.tree_size >= size):
        return sequenced, None
    cp = sign_checkpoint(key, size, await root_at(store, size), now)
    await store.add_checkpoint(cp)
    uow.emit(
        DomainEvent(
            "consent.checkpoint",
            str(cp.tree_size),
            cp.tree_size,
            now,
            cp.as_dict(),
            aggregatetype="checkpoint",
        )
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
    async with unit_of_work(sessions) as uow:  # the one transaction owner commits
        sequenced, cp = await run_once(uow, key, now, wait=wait)
    if cp is not None:
        append_to_file(checkpoint_file, cp)
        log.info("checkpoint_signed", tree_size=cp.tree_size, sequenced=sequenced)
    return sequenced, cp
