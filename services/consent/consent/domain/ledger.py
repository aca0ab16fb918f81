"""Pure ledger checks: what a ledger entry's hash covers, and a subject's chain verified.
What an entry sets (the projection) is domain/entries.py."""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from consent.domain.hashing import GENESIS, canonical, entry_hash, evidence_hash
from consent.domain.merkle import leaf_hash

CHAINED_FIELDS = (
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
)


def chained(row: Mapping[str, Any]) -> dict[str, Any]:
    """The fields of a ledger entry its hash commits to (from a row or a mapping)."""
    return {k: row[k] for k in CHAINED_FIELDS}


@dataclass(frozen=True)
class ChainedEntry:
    """A ledger entry as hashed: the one definition the writer (service/recorder.py),
    ``ledger verify`` and the transparency log's leaves all use."""

    fields: Mapping[str, Any]
    prev_hash: str
    evidence_hash: str

    def __post_init__(self) -> None:
        if set(self.fields) != set(CHAINED_FIELDS):
            raise ValueError(f"a ledger entry has exactly the fields {CHAINED_FIELDS}")

    @classmethod
    def of(cls, row: Mapping[str, Any]) -> ChainedEntry:
        return cls(chained(row), row["prev_hash"], row["evidence_hash"])

    def body(self) -> bytes:
        """The canonical bytes: SHA-256 of them is the chain hash, and they are the leaf's
        data in the transparency log (its leaf hash is SHA-256(0x00 || body))."""
        return canonical(
            {
                "entry": dict(self.fields),
                "prev_hash": self.prev_hash,
                "evidence_hash": self.evidence_hash,
            }
        )

    def hash(self) -> str:
        return entry_hash(self.fields, self.prev_hash, self.evidence_hash)

    def leaf_hash(self) -> bytes:
        return leaf_hash(self.body())

    def as_json(self) -> dict[str, Any]:
        """The entry as published in proofs and receipts: JSON whose canonical form is
        ``body()`` again (times as the canonical strings)."""
        return {**json.loads(self.body()), "hash": self.hash()}


@dataclass(frozen=True)
class ChainProblem:
    subject_id: str
    sequence: int
    problem: str
    field: str | None = None  # the column (or projected field) that differs


def verify_chain(
    subject_id: str,
    entries: Iterable[Mapping[str, Any]],
    evidence: Mapping[int, Mapping[str, Any]],
    *,
    head_sequence: int | None = None,
    head_hash: str | None = None,
) -> list[ChainProblem]:
    """Check sequences are 1..n without gaps, every hash recomputes, every link holds, and
    retained evidence still matches the hash the chain committed to."""
    problems: list[ChainProblem] = []
    prev_hash, expected_seq = GENESIS, 1
    for e in entries:
        seq = int(e["sequence"])
        if seq != expected_seq:
            problems.append(
                ChainProblem(subject_id, seq, f"expected sequence {expected_seq}", "sequence")
            )
        if e["prev_hash"] != prev_hash:
            problems.append(ChainProblem(subject_id, seq, "prev_hash does not link", "prev_hash"))
        if ChainedEntry.of(e).hash() != e["hash"]:
            problems.append(ChainProblem(subject_id, seq, "entry hash does not recompute", "hash"))
        ev = evidence.get(seq)
        if ev is not None and evidence_hash(ev) != e["evidence_hash"]:
            problems.append(
                ChainProblem(subject_id, seq, "evidence does not match its hash", "evidence")
            )
        prev_hash, expected_seq = e["hash"], seq + 1
    last = expected_seq - 1
    if head_sequence is not None and head_sequence != last:
        problems.append(
            ChainProblem(
                subject_id,
                head_sequence,
                f"subject sequence {head_sequence} != {last}",
                "subjects.sequence",
            )
        )
    if head_hash is not None and last > 0 and head_hash != prev_hash:
        problems.append(
            ChainProblem(
                subject_id, last, "subject head hash differs from chain", "subjects.last_hash"
            )
        )
    return problems
