"""What the scheduler finds due at a given ``now`` (passed in, never the database's clock):
material policy versions to announce, the subjects they affect, birthdays that change an
age status. Keyset pages on subject id, so a million subjects never hold one transaction."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from consent.adapters.policies import PolicyRepository
from consent.domain.model import AgeStatus, Policy

PENDING_RECONSENT = text("""
SELECT version FROM policy_versions
WHERE material AND reconsent_done_at IS NULL AND effective_at <= :now
ORDER BY effective_at, version
""")

RECONSENT_SUBJECTS = text("""
SELECT DISTINCT c.subject_id FROM consent_state c
JOIN subjects s ON s.subject_id = c.subject_id
WHERE c.status = 'granted' AND c.purpose = ANY(CAST(:purposes AS text[]))
  AND c.updated_at < :effective_at AND c.subject_id > :after AND s.erased_at IS NULL
  AND NOT EXISTS (
      SELECT 1 FROM consent_ledger l
      WHERE l.subject_id = c.subject_id AND l.type = 'consent.reconsent_required'
        AND l.policy_version = :version)
ORDER BY c.subject_id LIMIT :limit
""")

RECONSENT_DONE = text(
    "UPDATE policy_versions SET reconsent_done_at = :now WHERE version = :version"
)

ANNOUNCED = text("""
SELECT EXISTS (SELECT 1 FROM consent_ledger
               WHERE subject_id = :subject_id AND type = 'consent.reconsent_required'
                 AND policy_version = :version)
""")

AGE_CHECKS_DUE = text("""
SELECT subject_id FROM subjects
WHERE age_check_at <= :now AND erased_at IS NULL AND subject_id > :after
ORDER BY subject_id LIMIT :limit
""")

TRACK_AGE = text("""
UPDATE subjects SET age_status = :status, age_check_at = :check_at WHERE subject_id = :subject_id
""")

UNPUBLISHED = text("""
SELECT count(*) FROM (SELECT 1 FROM outbox WHERE published_at IS NULL LIMIT :cap) AS backlog
""")


class DueRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def policies_to_announce(self, now: datetime) -> list[Policy]:
        """Material versions in effect whose re-consent has not been announced to all."""
        versions = list((await self.session.execute(PENDING_RECONSENT, {"now": now})).scalars())
        return await PolicyRepository(self.session).get_many(versions)

    async def subjects_to_announce(self, policy: Policy, after: str, limit: int) -> list[str]:
        """Live subjects holding a grant of an affected purpose recorded before the version
        took effect, and not yet told about this version."""
        params = {
            "purposes": sorted(policy.affected_purposes),
            "effective_at": policy.effective_at,
            "after": after,
            "limit": limit,
            "version": policy.version,
        }
        return list((await self.session.execute(RECONSENT_SUBJECTS, params)).scalars())

    async def announced(self, subject_id: str, version: str) -> bool:
        params = {"subject_id": subject_id, "version": version}
        return bool((await self.session.execute(ANNOUNCED, params)).scalar())

    async def mark_announced(self, version: str, now: datetime) -> None:
        await self.session.execute(RECONSENT_DONE, {"version": version, "now": now})

    async def age_checks_due(self, now: datetime, after: str, limit: int) -> list[str]:
        params = {"now": now, "after": after, "limit": limit}
        return list((await self.session.execute(AGE_CHECKS_DUE, params)).scalars())

    async def track_age(
        self, subject_id: str, status: AgeStatus | None, check_at: datetime | None
    ) -> None:
        """Age bookkeeping without an event: the status did not change (or is only now
        tracked), so no decision moved."""
        params = {"subject_id": subject_id, "status": status, "check_at": check_at}
        await self.session.execute(TRACK_AGE, params)

    async def unpublished(self, cap: int) -> int:
        """Outbox rows the relay has not published yet, counted up to ``cap`` (the bulk
        jobs' throttle: counting a million-row backlog whole would cost more than it says)."""
        return int((await self.session.execute(UNPUBLISHED, {"cap": cap})).scalar() or 0)
