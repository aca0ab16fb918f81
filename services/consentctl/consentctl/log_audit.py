"""The part of ``ledger verify`` that does not trust the database: published checkpoints,
read from where they were published (the JSON Lines file shipped to write-once storage,
or the ``consent.checkpoints.v1`` topic), against the tree rebuilt from the ledger's own
entries."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition

from consent.domain import merkle
from consent.domain.ledger import ChainProblem
from consent.settings import Settings
from consent.transparency.verify import VerificationError, verify_checkpoint
from consent_common.kafka import client_kwargs

LOG = "(log)"


def read_file(path: str | Path) -> list[dict[str, Any]]:
    lines = Path(path).read_text().splitlines()
    return [json.loads(line) for line in lines if line.strip()]


async def read_topic(settings: Settings, timeout_s: float = 10.0) -> list[dict[str, Any]]:
    """Every record of the checkpoints topic, from its first offset to its end now."""
    consumer = AIOKafkaConsumer(**client_kwargs(settings), enable_auto_commit=False, group_id=None)
    await consumer.start()
    try:
        tp = TopicPartition(settings.checkpoints_topic, 0)
        consumer.assign([tp])
        await consumer.seek_to_beginning(tp)
        end = (await consumer.end_offsets([tp]))[tp]
        out: list[dict[str, Any]] = []
        deadline = asyncio.get_running_loop().time() + timeout_s
        while await consumer.position(tp) < end:
            if asyncio.get_running_loop().time() > deadline:
                raise TimeoutError("the checkpoints topic did not answer in time")
            for records in (await consumer.getmany(tp, timeout_ms=500)).values():
                out += [json.loads(r.value) for r in records if r.value]
        return out
    finally:
        await consumer.stop()


@dataclass
class TreeAudit:
    """Leaf hashes recomputed from the ledger's entries, by the leaf index they claim."""

    leaves: dict[int, tuple[bytes, str, int]] = field(default_factory=dict)
    problems: list[ChainProblem] = field(default_factory=list)

    def add(self, index: int, leaf: bytes, subject_id: str, sequence: int) -> None:
        if index in self.leaves:
            other = self.leaves[index]
            self.problems.append(
                ChainProblem(
                    subject_id,
                    sequence,
                    f"leaf_index {index} also claimed by {other[1]}#{other[2]}",
                    "leaf_index",
                )
            )
        self.leaves[index] = (leaf, subject_id, sequence)

    def check_nodes(self, stored: Mapping[int, bytes]) -> None:
        """The stored level-0 nodes are the entries' leaf hashes."""
        for index, (leaf, sid, seq) in sorted(self.leaves.items()):
            if stored.get(index) not in (None, leaf):
                self.problems.append(
                    ChainProblem(sid, seq, f"leaf {index} differs from log_nodes", "leaf_hash")
                )

    def check_published(
        self, published: list[dict[str, Any]], jwks: Mapping[str, Any], in_db: Mapping[int, str]
    ) -> int:
        """Every published checkpoint is signed by a published key and its root is the root
        of the tree rebuilt from the ledger; returns how many were checked."""
        by_size: dict[int, dict[str, Any]] = {}
        for cp in published:
            try:
                verify_checkpoint(cp, jwks)
            except (VerificationError, KeyError, ValueError) as exc:
                self.problems.append(
                    ChainProblem(
                        LOG, int(cp.get("tree_size", 0)), f"checkpoint: {exc}", "signature"
                    )
                )
                continue
            by_size[int(cp["tree_size"])] = cp
        stack: list[tuple[int, bytes]] = []  # complete subtrees (size, hash), left to right
        last_good, done = 0, 0
        for size in sorted(by_size):
            cp = by_size[size]
            while done < size:
                leaf = self.leaves.get(done)
                if leaf is None:
                    self.problems.append(
                        ChainProblem(
                            LOG,
                            done,
                            f"leaf {done} (in checkpoint {size}) has no "
                            "ledger entry: deleted, or its leaf_index changed",
                            "leaf_index",
                        )
                    )
                h = leaf[0] if leaf else b""
                stack.append((1, h))
                while len(stack) > 1 and stack[-1][0] == stack[-2][0]:
                    (n, right), (_, left) = stack.pop(), stack.pop()
                    stack.append((2 * n, merkle.node_hash(left, right)))
                done += 1
            root = stack[-1][1]
            for _, h in reversed(stack[:-1]):
                root = merkle.node_hash(h, root)
            if root.hex() != cp["root_hash"]:
                first = self.leaves.get(last_good)
                where = f" (first candidate: {first[1]}#{first[2]})" if first else ""
                self.problems.append(
                    ChainProblem(
                        LOG,
                        size,
                        f"published checkpoint {size} ({cp['issued_at']}): the "
                        f"ledger's tree has another root; an entry in leaves [{last_good}, "
                        f"{size}) was changed, removed or reordered{where}",
                        "root_hash",
                    )
                )
            else:
                last_good = size
            if in_db.get(size) not in (None, cp["root_hash"]):
                self.problems.append(
                    ChainProblem(
                        LOG,
                        size,
                        "log_checkpoints differs from the published checkpoint",
                        "root_hash",
                    )
                )
        return len(by_size)
