"""Stored first responses of writes sent with an ``Idempotency-Key``."""

from __future__ import annotations

from sqlalchemy import select, text
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from consent.adapters.tables import IdempotencyRecord

LOCK = text("SELECT pg_advisory_xact_lock(hashtextextended(:k, 7))")


class IdempotencyRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def lock(self, principal: str, key: str) -> None:
        """Serialise requests carrying the same key until this transaction ends."""
        await self.session.execute(
            LOCK,
            {"k": f"{principal}\n{key}"},
        )

    async def get(self, principal: str, key: str) -> IdempotencyRecord | None:
        stmt = select(IdempotencyRecord).where(
            col(IdempotencyRecord.principal) == principal,
            col(IdempotencyRecord.key) == key,
        )
        return (await self.session.execute(stmt)).scalar_one_or_none()

    async def save(self, record: IdempotencyRecord) -> None:
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
