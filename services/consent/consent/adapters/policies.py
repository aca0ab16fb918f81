"""Published policy versions, as the domain's ``Policy`` (rows never leave this module)."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from consent.adapters.tables import PolicyVersion
from consent.domain.model import Policy


class PolicyRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def all(self) -> list[Policy]:
        stmt = select(PolicyVersion).order_by(col(PolicyVersion.effective_at))
        return [policy_of(row) for row in (await self.session.execute(stmt)).scalars()]

    async def get(self, version: str) -> Policy | None:
        row = await self.session.get(PolicyVersion, version)
        return policy_of(row) if row is not None else None

    async def get_many(self, versions: list[str]) -> list[Policy]:
        """The named versions, in the order given (unknown ones left out)."""
        found = [await self.session.get(PolicyVersion, v) for v in versions]
        return [policy_of(row) for row in found if row is not None]

    async def add_policy(self, policy: Policy) -> None:
        """Insert ``policy``; its ``published_at`` must be set (it is the publish time)."""
        if policy.published_at is None:
            raise ValueError("a policy is added with its publish time")
        self.session.add(
            PolicyVersion(
                version=policy.version,
                effective_at=policy.effective_at,
                material=policy.material,
                affected_purposes=sorted(policy.affected_purposes),
                description=policy.description,
                published_at=policy.published_at,
            )
        )
        await self.session.flush()


def policy_of(row: PolicyVersion) -> Policy:
    return Policy(
        row.version,
        row.effective_at,
        row.material,
        frozenset(row.affected_purposes),
        description=row.description,
        published_at=row.published_at,
    )
