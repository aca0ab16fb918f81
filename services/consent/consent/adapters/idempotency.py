"""Stored first responses of writes sent with an ``Idempotency-Key``."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import select, text
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from consent.adapters.tables import IdempotencyRecord

LOCK = text("SELECT pg_advisory_xact_lock(hashtextextended(:k, 7))")


@dataclass(frozen=True)
class StoredResponse:
    """The first response to a write sent with ``key`` by ``principal``, and a hash of
    the request it answered (a different request with the same key is refused)."""

    principal: str
    key: str
    request_hash: str
    status_code: int
    body: bytes
    headers: dict[str, str]


class IdempotencyRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def lock(self, principal: str, key: str) -> None:
        """Serialise requests carrying the same key until this transaction ends."""
        await self.session.execute(
            LOCK,
            {"k": f"{principal}\n{key}"},
        )

    async def get(self, principal: str, key: str) -> StoredResponse | None:
        stmt = select(
            col(IdempotencyRecord.principal),
            col(IdempotencyRecord.key),
            col(IdempotencyRecord.request_hash),
            col(IdempotencyRecord.status_code),
            col(IdempotencyRecord.body),
            col(IdempotencyRecord.headers),
        ).where(
            col(IdempotencyRecord.principal) == principal,
            col(IdempotencyRecord.key) == key,
        )
        row = (await self.session.execute(stmt)).one_or_none()
        return StoredResponse(*row) if row is not None else None

    async def save(self, record: StoredResponse) -> None:
        await self.session.execute(
            insert(IdempotencyRecord).values(
                principal=record.principal,
                key=record.key,
                request_hash=record.request_hash,
                status_code=record.status_code,
                body=record.body,
                headers=record.headers,
            )
        )
