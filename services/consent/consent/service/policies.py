"""Publishing policy versions. A material version makes affected grants need re-consent;
that is evaluated at decision time, so nothing is rewritten and no right is reduced."""

from __future__ import annotations

from datetime import UTC, datetime

from consent.domain.events import DomainEvent
from consent.domain.model import DomainError, Policy
from consent.service.recorder import invalidate_policies
from consent.service.unit_of_work import UnitOfWork
from consent_common.timefmt import rfc3339


async def publish(
    uow: UnitOfWork,
    *,
    version: str,
    effective_at: datetime,
    material: bool,
    affected_purposes: list[str],
    description: str | None,
    now: datetime,
) -> Policy:
    effective_at = effective_at.astimezone(UTC)
    if await uow.policies.get(version) is not None:
        raise DomainError("policy_version_exists", f"policy version {version!r} already exists")
    policy = Policy(
        version,
        effective_at,
        material,
        frozenset(affected_purposes),
        description=description,
        published_at=now,
    )
    await uow.policies.add_policy(policy)
    invalidate_policies()
    uow.emit(
        DomainEvent(
            type="policy.published",
            subject_id=f"policy:{version}",
            sequence=None,
            occurred_at=now,
            aggregatetype="policy",
            data={
                "version": version,
                "effective_at": rfc3339(effective_at),
                "material": material,
                "affected_purposes": sorted(policy.affected_purposes),
                "description": description,
                "published_at": rfc3339(now),
            },
        )
    )
    return policy
