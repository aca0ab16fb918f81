"""Value objects of the consent domain."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Literal

Status = Literal["granted", "denied", "unset"]
Basis = Literal["opt_in", "opt_out"]
AgeStatus = Literal["adult", "unknown", "child", "teen_opt_in"]

STATUSES: tuple[str, ...] = ("granted", "denied", "unset")
CHANNELS: tuple[str, ...] = (
    "web",
    "ios",
    "android",
    "api",
    "import",
    "gpc",
    "guardian",
    "operator",
    "system",
)
SALE_SHARE: frozenset[str] = frozenset({"sale", "share"})


@dataclass(frozen=True)
class Purpose:
    key: str
    title: str
    description: str
    category: str
    legal_basis: dict[str, Basis]
    validity_days: int | None = None

    def basis(self, regime: str) -> Basis:
        return self.legal_basis.get(regime, self.legal_basis.get("other", "opt_in"))


@dataclass(frozen=True)
class Actor:
    type: str  # "subject", "guardian", "service", "operator", "system"
    id: str | None = None


@dataclass(frozen=True)
class PurposeRecord:
    """What is recorded for one purpose of one subject (the projection row)."""

    purpose: str
    status: Status
    source: str
    updated_at: datetime
    sequence: int = 0
    policy_version: str | None = None
    expires_at: datetime | None = None
    actor: Actor = Actor("subject")
    ended_reason: str | None = None  # "expired" | "lapsed"


@dataclass(frozen=True)
class Policy:
    version: str
    effective_at: datetime
    material: bool
    affected_purposes: frozenset[str]
    # what the policy list shows; no rule reads them
    description: str | None = field(default=None, compare=False)
    published_at: datetime | None = field(default=None, compare=False)


@dataclass
class SubjectSnapshot:
    """Everything the rules need about one subject at one moment."""

    subject_id: str
    sequence: int = 0
    jurisdiction: str | None = None
    birth_date: date | None = None
    gpc_opted_out_at: datetime | None = None
    erased_at: datetime | None = None
    records: dict[str, PurposeRecord] = field(default_factory=dict)
    guardian_ids: frozenset[str] = frozenset()
    last_hash: str | None = None
    # what the subject's last event said: the decisions it carried (None when written before
    # they were kept) and the age status then (None: not yet tracked)
    published_decisions: dict[str, bool] | None = None
    recorded_age_status: AgeStatus | None = None
    # the person this (anonymous) subject is merged into, while the link stands
    merged_into: str | None = None


@dataclass(frozen=True)
class Decision:
    allowed: bool
    reason: str


@dataclass(frozen=True)
class Change:
    purpose: str
    from_status: Status
    to_status: Status

    def as_dict(self) -> dict[str, str]:
        return {"purpose": self.purpose, "from": self.from_status, "to": self.to_status}


class DomainError(Exception):
    """A request that conflicts with a consent rule (HTTP 409 with ``code``)."""

    def __init__(self, code: str, detail: str) -> None:
        super().__init__(detail)
        self.code = code
        self.detail = detail


@dataclass(frozen=True)
class GuardianLink:
    """A verified guardian of a minor subject; ``revoked_at`` set once it no longer holds."""

    subject_id: str
    guardian_id: str
    method: str
    reference: str
    verified_at: datetime
    linked_at: datetime
    revoked_at: datetime | None = None
