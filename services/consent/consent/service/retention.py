"""Evidence retention: evidence (hashed IP, user agent, notice) is deleted after a configurable
period. The chain committed only to the evidence's hash, so verification still holds."""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from consent.settings import get_settings


async def purge_evidence(sessions: async_sessionmaker[AsyncSession], now: datetime) -> int:
    cutoff = now - timedelta(days=get_settings().evidence_retention_days)
    async with sessions() as session:
        result = await session.execute(
            text("DELETE FROM consent_evidence WHERE recorded_at < :cutoff"), {"cutoff": cutoff}
        )
        await session.commit()
        return int(result.rowcount or 0)  # type: ignore[attr-defined]
