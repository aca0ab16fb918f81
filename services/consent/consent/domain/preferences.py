"""Planning a change to a subject's recorded statuses: which purposes change, and may they."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import datetime

from consent.domain.decisions import needs_reconsent
from consent.domain.model import (
    SALE_SHARE,
    AgeStatus,
    Change,
    DomainError,
    Policy,
    PurposeRecord,
    Status,
    SubjectSnapshot,
)


def is_effective(record: PurposeRecord, policies: Iterable[Policy], now: datetime) -> bool:
    """False when the record no longer speaks for the subject (expired or awaiting re-consent)."""
    if record.expires_at is not None and record.expires_at <= now:
        return False
    return not needs_reconsent(record, policies, now)


def plan_changes(
    snapshot: SubjectSnapshot,
    requested: Mapping[str, Status],
    *,
    now: datetime,
    policies: Iterable[Policy] = (),
    age_status: AgeStatus = "unknown",
    acting_guardian: str | None = None,
) -> list[Change]:
    """Return the changes a request makes; raise DomainError when a rule forbids it.

    Choosing the same status again counts as a change only when the existing record no
    longer speaks for the subject (expired, lapsed or awaiting re-consent).
    """
    if snapshot.erased_at is not None:
        raise DomainError("subject_erased", "this subject has been erased")
    policies = tuple(policies)
    changes: list[Change] = []
    for purpose, to_status in sorted(requested.items()):
        record = snapshot.records.get(purpose)
        from_status: Status = record.status if record else "unset"
        stale = record is not None and (
            record.ended_reason is not None or not is_effective(record, policies, now)
        )
        if from_status == to_status and not (stale and to_status != "unset"):
            continue
        changes.append(Change(purpose, from_status, to_status))
    grants = [c for c in changes if c.to_status == "granted"]
    if grants and acting_guardian is not None and age_status != "child":
        raise DomainError(
            "guardian_authority_ended",
            "the subject is old enough to consent for themselves; a guardian cannot grant",
        )
    if grants and age_status == "child":
        if acting_guardian is None or acting_guardian not in snapshot.guardian_ids:
            raise DomainError(
                "guardian_required",
                "a child's consent must be given by a linked, verified guardian",
            )
        sold = [c.purpose for c in grants if c.purpose in SALE_SHARE]
        if sold:
            raise DomainError(
                "child_data_never_sold", f"a child's data is never sold or shared: {sold}"
            )
    return changes


def plan_gpc_opt_out(snapshot: SubjectSnapshot) -> list[Change]:
    """A ``Sec-GPC: 1`` signal: deny sale and share unless already denied, or unless the
    subject explicitly granted them after the signal was first honoured."""
    changes = []
    for purpose in sorted(SALE_SHARE):
        record = snapshot.records.get(purpose)
        if record is not None and record.status == "denied":
            continue
        if (
            record is not None
            and record.status == "granted"
            and snapshot.gpc_opted_out_at is not None
            and record.updated_at > snapshot.gpc_opted_out_at
        ):
            continue
        changes.append(Change(purpose, record.status if record else "unset", "denied"))
    return changes
