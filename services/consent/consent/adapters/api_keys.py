"""Service API keys, stored as hashes with their scopes."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from consent.adapters.tables import ApiKey


@dataclass(frozen=True)
class ApiKeyView:
    id: str
    name: str | None
    scopes: frozenset[str]
    created_at: datetime
    revoked_at: datetime | None


class ApiKeyRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def by_hash(self, key_hash: str) -> ApiKeyView | None:
        stmt = select(ApiKey).where(col(ApiKey.key_hash) == key_hash)
        row = (await self.session.execute(stmt)).scalar_one_or_none()
        return _key(row) if row is not None else None

    async def add_key(
        self, key_id: str, key_hash: str, name: str | None, scopes: list[str]
    ) -> None:
        self.session.add(ApiKey(id=key_id, key_hash=key_hash, name=name, scopes=sorted(scopes)))
        await self.session.flush()

    async def all(self) -> list[ApiKeyView]:
        stmt = select(ApiKey).order_by(col(ApiKey.created_at))
        return [_key(row) for row in (await self.session.execute(stmt)).scalars()]

    async def revoke(self, key_id: str, now: datetime) -> bool:
        """False when no active key has that id."""
        res = await self.session.execute(
            update(ApiKey)
            .where(col(ApiKey.id) == key_id, col(ApiKey.revoked_at).is_(None))
            .values(revoked_at=now)
        )
        return bool(res.rowcount)  # type: ignore[attr-defined]


def _key(row: ApiKey) -> ApiKeyView:
    return ApiKeyView(row.id, row.name, frozenset(row.scopes), row.created_at, row.revoked_at)
