"""The transparency log's reads for the API (proofs, checkpoints, an entry and its
evidence), on the unit of work's session: the SQL itself lives in ``transparency/``."""

from __future__ import annotations

from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from consent.adapters.db import driver
from consent.transparency import proofs
from consent.transparency.log import Checkpoint, checkpoint_at, latest_checkpoint


class TransparencyRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def inclusion(self, subject_id: str, sequence: int) -> dict[str, Any]:
        return await proofs.inclusion(await driver(self.session), subject_id, sequence)

    async def consistency(self, old: int, new: int) -> dict[str, Any]:
        return await proofs.consistency(await driver(self.session), old, new)

    async def latest(self) -> Checkpoint | None:
        return await latest_checkpoint(await driver(self.session))

    async def at(self, tree_size: int) -> Checkpoint | None:
        return await checkpoint_at(await driver(self.session), tree_size)

    async def entry(self, subject_id: str, sequence: int) -> dict[str, Any]:
        return await proofs.entry_row(await driver(self.session), subject_id, sequence)

    async def evidence(self, subject_id: str, sequence: int) -> str | None:
        conn = await driver(self.session)
        value: str | None = await conn.fetchval(
            "SELECT evidence::text FROM consent_evidence WHERE subject_id = $1 AND sequence = $2",
            subject_id,
            sequence,
        )
        return value
