"""How a decision is made: ``decide`` applies DESIGN.md §3's precedence, nothing else.

1. erased subject → deny
2. child without a linked, verified guardian → deny
3. a child's data is never sold or shared; a teen's sale/share needs an explicit opt-in;
   for a child every purpose is opt-in, whatever the regime
4. GPC / opt-out signal → deny ``sale`` and ``share`` (unless a newer explicit grant)
5. explicit record, unless expired, awaiting re-consent after a material policy change,
   or given by a guardian for a subject who is no longer a child
6. the regime default (opt-in: denied; opt-out: allowed)
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime

from consent.domain.model import (
    SALE_SHARE,
    AgeStatus,
    Decision,
    Policy,
    Purpose,
    PurposeRecord,
)


@dataclass(frozen=True)
class DecisionContext:
    regime: str
    age_status: AgeStatus = "unknown"
    has_guardian: bool = False
    erased: bool = False
    gpc_opted_out_at: datetime | None = None
    policies: tuple[Policy, ...] = ()


def needs_reconsent(record: PurposeRecord, policies: Iterable[Policy], now: datetime) -> bool:
    """A grant recorded before a material policy version touching its purpose took effect."""
    if record.status != "granted":
        return False
    return any(
        p.material
        and record.purpose in p.affected_purposes
        and record.updated_at < p.effective_at <= now
        for p in policies
    )


def _lapsed_reason(ctx: DecisionContext, record: PurposeRecord, now: datetime) -> str | None:
    """Why an explicit record no longer speaks for the subject, or None while it does."""
    if record.status == "granted" and record.actor.type == "guardian" and ctx.age_status != "child":
        return "needs_reconsent"  # came of age: the subject is asked again
    if record.expires_at is not None and record.expires_at <= now:
        return "expired"
    if needs_reconsent(record, ctx.policies, now):
        return "needs_reconsent"
    return None


def decide(
    ctx: DecisionContext, purpose: Purpose, record: PurposeRecord | None, now: datetime
) -> Decision:
    # Children are opt-in everywhere (COPPA, GDPR Art. 8); teens opt in to sale/share.
    default_allowed = purpose.basis(ctx.regime) == "opt_out" and ctx.age_status != "child"
    if ctx.erased:
        return Decision(False, "erased")
    if ctx.age_status == "child" and not ctx.has_guardian:
        return Decision(False, "minor_without_guardian")
    lapsed = _lapsed_reason(ctx, record, now) if record and record.status != "unset" else None
    if purpose.key in SALE_SHARE:
        if ctx.age_status == "child":
            return Decision(False, "child_data_never_sold")
        if ctx.age_status == "teen_opt_in":
            default_allowed = False
        if record is not None and record.source == "gpc" and record.status == "denied":
            return Decision(False, "gpc_opt_out")
        newer_grant = (
            record is not None
            and record.status == "granted"
            and lapsed is None
            and ctx.gpc_opted_out_at is not None
            and record.updated_at > ctx.gpc_opted_out_at
        )
        if ctx.gpc_opted_out_at is not None and not newer_grant:
            return Decision(False, "gpc_opt_out")
    if record is None or record.status == "unset":
        if record is not None and record.ended_reason == "expired":
            return Decision(default_allowed, "expired")
        if record is not None and record.ended_reason == "lapsed":
            return Decision(default_allowed, "needs_reconsent")
        return Decision(default_allowed, "regime_default")
    if lapsed is not None:
        return Decision(default_allowed, lapsed)
    if record.status == "granted":
        return Decision(True, "explicit_grant")
    return Decision(False, "explicit_denial")


def decide_all(
    ctx: DecisionContext,
    catalog: Mapping[str, Purpose],
    records: Mapping[str, PurposeRecord],
    now: datetime,
) -> dict[str, Decision]:
    return {key: decide(ctx, p, records.get(key), now) for key, p in catalog.items()}
