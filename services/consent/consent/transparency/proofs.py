"""Inclusion and consistency proofs, from the stored subtrees: O(log² n) node reads, one
query each, never a pass over the log."""

from __future__ import annotations

from typing import Any

from consent.adapters.transparency import TransparencyRepository
from consent.domain import merkle
from consent.domain.ledger import ChainedEntry


class NoSuchEntry(LookupError):
    pass


class NotYetCheckpointed(LookupError):
    pass


class NoSuchCheckpoint(LookupError):
    pass


async def entry_row(log: TransparencyRepository, subject_id: str, sequence: int) -> dict[str, Any]:
    row = await log.entry(subject_id, sequence)
    if row is None:
        raise NoSuchEntry(f"{subject_id} has no ledger entry {sequence}")
    return row


async def inclusion(log: TransparencyRepository, subject_id: str, sequence: int) -> dict[str, Any]:
    """API.md: ``{entry, leaf_index, leaf_hash, inclusion_proof, checkpoint}``."""
    row = await entry_row(log, subject_id, sequence)
    cp = await log.latest()
    index = row["leaf_index"]
    if index is None or cp is None or index >= cp.tree_size:
        raise NotYetCheckpointed(f"entry {sequence} is not in a checkpoint yet")
    entry = ChainedEntry.of(row)
    wanted = merkle.nodes_needed(lambda node: merkle.inclusion_proof(index, cp.tree_size, node))
    path = merkle.inclusion_proof(index, cp.tree_size, await log.nodes(wanted))
    return {
        "entry": entry.as_json(),
        "leaf_index": index,
        "leaf_hash": entry.leaf_hash().hex(),
        "inclusion_proof": [h.hex() for h in path],
        "checkpoint": cp.as_dict(),
    }


async def consistency(log: TransparencyRepository, old: int, new: int) -> dict[str, Any]:
    """A consistency proof between two issued checkpoints."""
    first, second = await log.at(old), await log.at(new)
    if first is None or second is None:
        raise NoSuchCheckpoint("both tree sizes must be issued checkpoints")
    wanted = merkle.nodes_needed(lambda node: merkle.consistency_proof(old, new, node))
    proof = merkle.consistency_proof(old, new, await log.nodes(wanted))
    return {
        "from": first.as_dict(),
        "to": second.as_dict(),
        "consistency_proof": [h.hex() for h in proof],
    }
